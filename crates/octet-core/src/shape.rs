use std::fmt;

use crate::CoreError;

/// Dimensions of a tensor, outermost first (TFLite's NHWC for images).
///
/// Dimensions are `i32` as in the file format; a negative entry means "unknown" and only appears
/// in shape signatures, never in a shape octet computes with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(Vec<i32>);

impl Shape {
    /// A shape with the given dimensions.
    pub fn new(dims: Vec<i32>) -> Self {
        Shape(dims)
    }

    /// A rank-0 shape (one element).
    pub fn scalar() -> Self {
        Shape(Vec::new())
    }

    /// The dimensions.
    pub fn dims(&self) -> &[i32] {
        &self.0
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The dimension at `axis`, if there is one.
    pub fn dim(&self, axis: usize) -> Option<i32> {
        self.0.get(axis).copied()
    }

    /// Number of elements, checked: an error for unknown (negative) dimensions or overflow.
    pub fn num_elements(&self) -> Result<usize, CoreError> {
        self.0
            .iter()
            .try_fold(1usize, |acc, &d| {
                usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))
            })
            .ok_or_else(|| CoreError::IndefiniteShape(self.to_string()))
    }
}

impl From<Vec<i32>> for Shape {
    fn from(dims: Vec<i32>) -> Self {
        Shape(dims)
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_count_is_checked() {
        assert_eq!(Shape::new(vec![1, 8, 8, 3]).num_elements(), Ok(192));
        assert_eq!(Shape::scalar().num_elements(), Ok(1));
        assert!(Shape::new(vec![-1, 4]).num_elements().is_err());
        assert!(
            Shape::new(vec![i32::MAX, i32::MAX, i32::MAX])
                .num_elements()
                .is_err()
        );
        assert_eq!(Shape::new(vec![1, 8, 8, 3]).to_string(), "[1, 8, 8, 3]");
    }
}
