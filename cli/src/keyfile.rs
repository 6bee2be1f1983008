//! The identity key on disk: read it, or create it (mode 0600). Never silently replaced.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use p2p_chat_core::Ed25519Keys;

/// Random bytes from the operating system.
pub fn os_random<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))
        .context("cannot read /dev/urandom")?;
    Ok(b)
}

/// Loads the key at `path`, or creates it if there is no file there.
pub fn load_or_create(path: &Path) -> Result<Ed25519Keys> {
    match std::fs::read(path) {
        Ok(bytes) => Ed25519Keys::from_key_file(&bytes)
            .with_context(|| format!("identity file {} is unusable (not replaced)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let keys = Ed25519Keys::from_secret(os_random()?);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("cannot create identity file {}", path.display()))?;
            f.write_all(keys.to_key_file().as_bytes())
                .and_then(|_| f.sync_all())
                .with_context(|| format!("cannot write identity file {}", path.display()))?;
            Ok(keys)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read identity file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2p_chat_core::Keys;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_private_then_reloaded_and_never_replaced() {
        let dir = std::env::temp_dir().join(format!("p2p-chat-key-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("identity.key");
        let a = load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let b = load_or_create(&path).unwrap();
        assert_eq!(a.public_key(), b.public_key());
        std::fs::write(&path, b"p2p-chat ed25519 secret key v1\nsecret zz\n").unwrap();
        let err = load_or_create(&path).err().unwrap();
        assert!(format!("{err:#}").contains("unusable"), "{err:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"p2p-chat ed25519 secret key v1\nsecret zz\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
