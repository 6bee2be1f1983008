//! Invite codes: one copy-pasteable string that lets its holder into a private room.
//!
//! A code holds the room's name, secret and owner, a few addresses of members to dial, when it was
//! made and when it stops working, and the inviter's key and signature over all of it. The secret is the membership:
//! whoever holds a code is in, so codes go only to people who should be. The signature says who
//! handed it out and that no address was swapped on the way; the expiry bounds how long a leaked
//! code works for joining through it (the secret itself does not expire). Joining, the holder
//! shows the code, without the secret, in its `Join` (see `log`): members check that a member
//! signed it, and that it was made after any ban of the holder.
//!
//! Text form: `p2pchat-invite2:` then base64url (no padding) of the bincode of [`Invite`].

use core::net::SocketAddr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::keys::{normalize, RoomSecret};
use super::log::JoinProof;
use crate::identity::{Keys, PeerId, PublicKey, Signature};
use crate::time::Time;

pub const PREFIX: &str = "p2pchat-invite2:";
/// Most member addresses a code carries.
pub const MAX_INVITE_ADDRS: usize = 4;
/// Longest code accepted, in characters: far above any real one (about 300).
const MAX_CODE_CHARS: usize = 2048;
const DOMAIN: &[u8] = b"p2p-chat/invite/v2";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invite {
    /// The room's name as its creator wrote it (without `#`).
    pub name: String,
    pub secret: RoomSecret,
    /// The room's owner (its keys are derived from the secret and this key).
    pub owner: PublicKey,
    pub addrs: Vec<SocketAddr>,
    /// Unix milliseconds when the code was made.
    pub issued_ms: u64,
    /// Unix milliseconds after which the code is refused.
    pub expires_ms: u64,
    pub inviter: PublicKey,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InviteError {
    #[error("not an invite code (it starts with {PREFIX})")]
    NotAnInvite,
    #[error("the invite code is damaged (copied in part?)")]
    Damaged,
    #[error("the invite code's signature does not verify")]
    BadSignature,
    #[error("the invite code expired")]
    Expired,
}

/// The fields the inviter signs, in the order they are encoded.
#[derive(Serialize)]
struct Signed<'a> {
    name: &'a str,
    secret: &'a RoomSecret,
    owner: &'a PublicKey,
    addrs: &'a [SocketAddr],
    issued_ms: u64,
    expires_ms: u64,
    inviter: &'a PublicKey,
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<4096>()
}

impl Invite {
    /// A code made at `now` by `keys`, refused after `expires`.
    pub fn new(
        keys: &dyn Keys,
        name: &str,
        secret: RoomSecret,
        owner: PublicKey,
        mut addrs: Vec<SocketAddr>,
        now: Time,
        expires: Time,
    ) -> Invite {
        addrs.truncate(MAX_INVITE_ADDRS);
        let name = normalize(name);
        let inviter = keys.public_key();
        let (issued_ms, expires_ms) = (now.as_millis(), expires.as_millis());
        let signed = signed_bytes(&name, &secret, &owner, &addrs, issued_ms, expires_ms, &inviter);
        let signature = keys.sign(&signed);
        Invite { name, secret, owner, addrs, issued_ms, expires_ms, inviter, signature }
    }

    /// What a `Join` shows of this code.
    pub fn proof(&self) -> JoinProof {
        JoinProof {
            addrs: self.addrs.clone(),
            issued_ms: self.issued_ms,
            expires_ms: self.expires_ms,
            inviter: self.inviter,
            signature: self.signature,
        }
    }

    /// Whether `proof` shows a code of the room `name` with `secret` and `owner`, signed by its
    /// inviter. Its expiry is not checked: it was checked when the code was used.
    pub fn proves(keys: &dyn Keys, name: &str, secret: &RoomSecret, owner: &PublicKey, proof: &JoinProof) -> bool {
        proof.addrs.len() <= MAX_INVITE_ADDRS && {
            let p = proof;
            let signed = signed_bytes(name, secret, owner, &p.addrs, p.issued_ms, p.expires_ms, &p.inviter);
            keys.verify(&p.inviter, &signed, &p.signature)
        }
    }

    pub fn inviter_id(&self) -> PeerId {
        self.inviter.peer_id()
    }

    pub fn to_code(&self) -> String {
        let bytes = bincode::serde::encode_to_vec(self, config()).expect("encoding into memory cannot fail");
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Reads and checks a code at `now`: its form, its signature and its expiry.
    pub fn from_code(code: &str, keys: &dyn Keys, now: Time) -> Result<Invite, InviteError> {
        let body = code.trim().strip_prefix(PREFIX).ok_or(InviteError::NotAnInvite)?;
        if body.len() > MAX_CODE_CHARS {
            return Err(InviteError::Damaged);
        }
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| InviteError::Damaged)?;
        let invite: Invite = match bincode::serde::decode_from_slice(&bytes, config()) {
            Ok((i, used)) if used == bytes.len() => i,
            _ => return Err(InviteError::Damaged),
        };
        if invite.addrs.len() > MAX_INVITE_ADDRS || invite.name != normalize(&invite.name) {
            return Err(InviteError::Damaged);
        }
        let i = &invite;
        let signed = signed_bytes(&i.name, &i.secret, &i.owner, &i.addrs, i.issued_ms, i.expires_ms, &i.inviter);
        if !keys.verify(&invite.inviter, &signed, &invite.signature) {
            return Err(InviteError::BadSignature);
        }
        if now.as_millis() > invite.expires_ms {
            return Err(InviteError::Expired);
        }
        Ok(invite)
    }
}

fn signed_bytes(
    name: &str,
    secret: &RoomSecret,
    owner: &PublicKey,
    addrs: &[SocketAddr],
    issued_ms: u64,
    expires_ms: u64,
    inviter: &PublicKey,
) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    let fields = Signed { name, secret, owner, addrs, issued_ms, expires_ms, inviter };
    out.extend(bincode::serde::encode_to_vec(&fields, config()).expect("encoding into memory cannot fail"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Ed25519Keys;

    fn invite() -> (Ed25519Keys, Invite) {
        let k = Ed25519Keys::from_seed(1);
        let i = Invite::new(
            &k,
            "#Team",
            RoomSecret([5; 32]),
            k.public_key(),
            vec!["127.0.0.1:9000".parse().unwrap()],
            Time::from_millis(1),
            Time::from_millis(10_000),
        );
        (k, i)
    }

    #[test]
    fn a_code_reads_back_as_the_invite() {
        let (k, i) = invite();
        let code = i.to_code();
        assert!(code.starts_with(PREFIX) && code.len() < 400, "{code}");
        assert_eq!(Invite::from_code(&format!("  {code}\n"), &k, Time::from_millis(9_000)), Ok(i.clone()));
        assert_eq!(i.name, "team");
        assert!(Invite::proves(&k, "team", &i.secret, &i.owner, &i.proof()));
        assert!(!Invite::proves(&k, "team", &RoomSecret([6; 32]), &i.owner, &i.proof()));
        assert!(!Invite::proves(&k, "team", &i.secret, &PublicKey([1; 32]), &i.proof()));
    }

    #[test]
    fn damaged_forged_and_expired_codes_are_refused() {
        let (k, i) = invite();
        let code = i.to_code();
        let now = Time::from_millis(1);
        assert_eq!(Invite::from_code("hello", &k, now), Err(InviteError::NotAnInvite));
        assert_eq!(Invite::from_code(&code[..code.len() - 9], &k, now), Err(InviteError::Damaged));
        assert_eq!(Invite::from_code(&code, &k, Time::from_millis(10_001)), Err(InviteError::Expired));
        let mut swapped = i.clone();
        swapped.addrs = vec!["10.0.0.66:1".parse().unwrap()];
        assert_eq!(Invite::from_code(&swapped.to_code(), &k, now), Err(InviteError::BadSignature));
        let long = format!("{PREFIX}{}", "A".repeat(5000));
        assert_eq!(Invite::from_code(&long, &k, now), Err(InviteError::Damaged));
    }

    #[test]
    fn any_text_is_refused_without_panicking() {
        quickcheck::QuickCheck::new().quickcheck(
            (|s: String| Invite::from_code(&format!("{PREFIX}{s}"), &Ed25519Keys::from_seed(1), Time::ZERO).is_err())
                as fn(String) -> bool,
        );
    }
}
