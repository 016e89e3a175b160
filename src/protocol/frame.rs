//! The 4-byte big-endian length prefix in front of every request and response.

/// Why a length prefix was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is negative or zero")]
    NotPositive(i32),
    #[error("frame length {length} exceeds socket.request.max.bytes {max}")]
    TooLarge { length: usize, max: usize },
}

/// Checks a request's length prefix against the configured maximum, before any allocation.
pub fn check_length(prefix: [u8; 4], max: usize) -> Result<usize, FrameError> {
    let length = i32::from_be_bytes(prefix);
    if length <= 0 {
        return Err(FrameError::NotPositive(length));
    }
    let length = length as usize;
    if length > max {
        return Err(FrameError::TooLarge { length, max });
    }
    Ok(length)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lengths_up_to_the_limit() {
        assert_eq!(check_length(10i32.to_be_bytes(), 100), Ok(10));
        assert_eq!(check_length(100i32.to_be_bytes(), 100), Ok(100));
    }

    #[test]
    fn refuses_zero_negative_and_oversized() {
        assert_eq!(
            check_length(0i32.to_be_bytes(), 100),
            Err(FrameError::NotPositive(0))
        );
        assert_eq!(
            check_length((-5i32).to_be_bytes(), 100),
            Err(FrameError::NotPositive(-5))
        );
        assert_eq!(
            check_length(i32::MAX.to_be_bytes(), 100),
            Err(FrameError::TooLarge {
                length: i32::MAX as usize,
                max: 100
            })
        );
    }
}
