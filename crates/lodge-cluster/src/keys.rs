//! Writing cluster key files (`lodge cluster keygen`): one key per line,
//! `KEY_ID BASE64_OF_32_BYTES`, the current key first and the previous one second
//! (lodge-proto's `KeyRing` reads them).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lodge_proto::seal::{KeyFileError, KeyRing};

const HEADER: &str = "# Lodge cluster key: the same file on every node, readable by Lodge only.\n\
                      # The first key seals new tokens; a second line is the previous key,\n\
                      # which still opens the tokens it sealed.\n";

fn key_line(previous_id: Option<&str>) -> String {
    let id = loop {
        let id = format!("k{:08x}", rand::random::<u32>());
        if Some(id.as_str()) != previous_id {
            break id;
        }
    };
    let key: [u8; 32] = rand::random();
    format!("{id} {}\n", STANDARD.encode(key))
}

/// A new key file with one fresh key.
pub fn generate_key_file() -> String {
    format!("{HEADER}{}", key_line(None))
}

/// `existing` with a fresh current key: its current key becomes the previous one and
/// its previous key is dropped. Roll it out to every node, and once no live session is
/// older than the rotation, rotate again or remove the second line.
pub fn rotate_key_file(existing: &str) -> Result<String, KeyFileError> {
    let ring = KeyRing::parse(existing)?;
    let current = existing
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .ok_or_else(|| KeyFileError("the key file holds no key".into()))?;
    Ok(format!(
        "{HEADER}{}{current}\n",
        key_line(Some(ring.current_id()))
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_file_parses_and_rotation_keeps_one_previous_key() {
        let first = generate_key_file();
        let ring = KeyRing::parse(&first).unwrap();
        let token = ring.seal_bytes(b"x", b"t");
        let second = rotate_key_file(&first).unwrap();
        let rotated = KeyRing::parse(&second).unwrap();
        assert_ne!(rotated.current_id(), ring.current_id());
        assert_eq!(rotated.open_bytes(&token, b"t").unwrap(), b"x");
        let third = KeyRing::parse(&rotate_key_file(&second).unwrap()).unwrap();
        assert!(
            third.open_bytes(&token, b"t").is_err(),
            "two rotations retire it"
        );
        assert_eq!(
            rotate_key_file("# nothing\n").unwrap_err(),
            KeyFileError("the key file holds no key".into())
        );
    }
}
