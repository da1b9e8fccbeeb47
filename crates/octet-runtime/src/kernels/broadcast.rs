//! Broadcasting of element-wise binary ops (numpy rules, up to TFLite's 6 dimensions).
