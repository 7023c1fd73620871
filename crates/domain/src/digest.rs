//! Content digests: the SHA-256 of a file's content (its `sha256`), and of the names the
//! hot store keys by a digest.

/// The SHA-256 of `content` in lowercase hex. `ring`'s, which takes the CPU's SHA extensions
/// where it has them (as `sha2` does) and otherwise an AVX2/SSSE3 assembly path, where `sha2`
/// falls back to portable Rust: the same speed on this machine, ~25 % faster on a CPU without
/// the extensions (docs/BENCHMARKS.md, issue #19).
pub(crate) fn sha256_hex(content: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, content.as_bytes());
    lower_hex(digest.as_ref())
}

/// `bytes` in lowercase hex (as `hex::encode`, without its iterator of chars).
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = Vec::with_capacity(bytes.len() * 2);
    for &b in bytes {
        text.push(DIGITS[usize::from(b >> 4)]);
        text.push(DIGITS[usize::from(b & 0xf)]);
    }
    String::from_utf8(text).expect("hex digits are ASCII")
}

#[cfg(test)]
mod tests {
    use super::{lower_hex, sha256_hex};
    use proptest::prelude::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn digest_of_known_texts() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    proptest! {
        /// The same text as the `sha2` + `hex` construction it replaced, at every length
        /// around the 64-byte blocks and the 4 KiB of the benchmarks.
        #[test]
        fn digest_is_sha2s(content in ".{0,300}", pad in 0usize..4200) {
            let content = format!("{content}{}", "x".repeat(pad));
            prop_assert_eq!(sha256_hex(&content), hex::encode(Sha256::digest(content.as_bytes())));
        }

        #[test]
        fn hex_is_hex_encode(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            prop_assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
        }
    }
}
