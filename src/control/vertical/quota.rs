//! The only way to change one instance's quota (memory and CPU): a [`QuotaUpdate`] merged
//! and validated as a whole by [`Quota::update`] before anything is written. [`Quota`] and its
//! [`Bounds`] are what the manifest says; they live in the manifest, below this layer.

use serde::{Deserialize, Serialize};

use crate::manifest::Bytes;
pub use crate::manifest::{Bounds, Quota, CPU_MIN_MILLICORES, MEMORY_MIN_BYTES};

/// A change to some dimensions of a quota; `None` leaves a dimension as it is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaUpdate {
    pub memory_bytes: Option<u64>,
    pub cpu_millicores: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum QuotaError {
    #[error(
        "memory {} is outside the function's vertical.memory bounds [{}, {}]",
        Bytes(*value), Bytes(*min), Bytes(*max)
    )]
    Memory { value: u64, min: u64, max: u64 },
    #[error("cpu {value}m is outside the function's vertical.cpu bounds [{min}m, {max}m]")]
    Cpu { value: u64, min: u64, max: u64 },
    #[error("a resize must change memory or cpu")]
    Empty,
}

// An inherent impl beside the update type, though `Quota` is defined in the manifest.
impl Quota {
    /// The merged quota, if every dimension of it lies within `bounds`. Nothing is applied
    /// here: the caller writes the result only when the whole of it is valid.
    pub fn update(&self, u: &QuotaUpdate, bounds: &Bounds) -> Result<Quota, QuotaError> {
        if u.memory_bytes.is_none() && u.cpu_millicores.is_none() {
            return Err(QuotaError::Empty);
        }
        let next = Quota {
            memory_bytes: u.memory_bytes.unwrap_or(self.memory_bytes),
            cpu_millicores: u.cpu_millicores.unwrap_or(self.cpu_millicores),
        };
        let (lo, hi) = (bounds.memory_min_bytes, bounds.memory_max_bytes);
        if u.memory_bytes.is_some() && !(lo..=hi).contains(&next.memory_bytes) {
            return Err(QuotaError::Memory {
                value: next.memory_bytes,
                min: lo,
                max: hi,
            });
        }
        let (lo, hi) = (bounds.cpu_min_millicores, bounds.cpu_max_millicores);
        if u.cpu_millicores.is_some() && !(lo..=hi).contains(&next.cpu_millicores) {
            return Err(QuotaError::Cpu {
                value: next.cpu_millicores,
                min: lo,
                max: hi,
            });
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Bounds = Bounds {
        memory_min_bytes: 16 << 20,
        memory_max_bytes: 1 << 30,
        cpu_min_millicores: 50,
        cpu_max_millicores: 1000,
    };

    #[test]
    fn update_merges_and_validates_as_a_whole() {
        let q = Quota {
            memory_bytes: 128 << 20,
            cpu_millicores: 250,
        };
        let u = QuotaUpdate {
            memory_bytes: Some(256 << 20),
            cpu_millicores: None,
        };
        assert_eq!(
            q.update(&u, &B),
            Ok(Quota {
                memory_bytes: 256 << 20,
                cpu_millicores: 250
            })
        );
        // One bad dimension rejects the whole update.
        let bad = QuotaUpdate {
            memory_bytes: Some(64 << 20),
            cpu_millicores: Some(5000),
        };
        assert_eq!(
            q.update(&bad, &B),
            Err(QuotaError::Cpu {
                value: 5000,
                min: 50,
                max: 1000
            })
        );
        assert_eq!(
            q.update(&QuotaUpdate::default(), &B),
            Err(QuotaError::Empty)
        );
        assert!(matches!(
            q.update(
                &QuotaUpdate {
                    memory_bytes: Some(2 << 30),
                    cpu_millicores: None
                },
                &B
            ),
            Err(QuotaError::Memory { .. })
        ));
    }

    #[test]
    fn clamp_moves_inside() {
        let q = B.clamp(Quota {
            memory_bytes: 1,
            cpu_millicores: 9999,
        });
        assert_eq!(q.memory_bytes, 16 << 20);
        assert_eq!(q.cpu_millicores, 1000);
    }
}
