//! Padding a plaintext to one of a few sizes before it is encrypted, so a ciphertext's length
//! tells an observer (a mailbox, a relay) only which bucket the message fell in.
//!
//! Layout: the plaintext's length (u32, big-endian), the plaintext, zeros up to the bucket.

/// The sizes a padded plaintext can have. Ciphertexts add the ratchet's fixed overhead.
pub const BUCKETS: [usize; 4] = [256, 1024, 4096, 16384];

/// The largest plaintext that fits the last bucket.
pub const MAX_PLAINTEXT: usize = BUCKETS[BUCKETS.len() - 1] - LEN_BYTES;

const LEN_BYTES: usize = 4;

/// `None` if it does not fit the largest bucket.
pub fn pad(plain: &[u8]) -> Option<Vec<u8>> {
    let need = plain.len() + LEN_BYTES;
    let bucket = *BUCKETS.iter().find(|&&b| b >= need)?;
    let mut out = Vec::with_capacity(bucket);
    out.extend_from_slice(&(plain.len() as u32).to_be_bytes());
    out.extend_from_slice(plain);
    out.resize(bucket, 0);
    Some(out)
}

/// The plaintext, if `padded` is exactly a bucket long and its length field fits.
pub fn unpad(padded: &[u8]) -> Option<&[u8]> {
    if !BUCKETS.contains(&padded.len()) {
        return None;
    }
    let len = u32::from_be_bytes(padded[..LEN_BYTES].try_into().ok()?) as usize;
    padded.get(LEN_BYTES..LEN_BYTES + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::{QuickCheck, TestResult};

    #[test]
    fn every_plaintext_comes_back_from_the_smallest_bucket_it_fits() {
        fn prop(len: u16, fill: u8) -> TestResult {
            let plain = vec![fill; usize::from(len) % (MAX_PLAINTEXT + 10)];
            let Some(padded) = pad(&plain) else {
                return TestResult::from_bool(plain.len() > MAX_PLAINTEXT);
            };
            let smallest = BUCKETS.iter().find(|&&b| b >= plain.len() + LEN_BYTES);
            TestResult::from_bool(Some(&padded.len()) == smallest && unpad(&padded) == Some(&plain[..]))
        }
        QuickCheck::new().tests(500).quickcheck(prop as fn(u16, u8) -> TestResult);
    }

    #[test]
    fn refuses_odd_sizes_and_lying_lengths() {
        assert_eq!(unpad(&[0; 100]), None);
        let mut p = pad(b"hi").unwrap();
        p[..4].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(unpad(&p), None);
        assert_eq!(pad(&vec![0; MAX_PLAINTEXT + 1]), None);
    }
}
