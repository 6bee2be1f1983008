//! What leaves the node: frames queued per connection (sealed by `poll_output`), raw handshake
//! bytes, and events.

use super::*;

impl Node {
    pub(super) fn send(&mut self, conn: ConnId, msg: &Message) {
        let buf = tx_buf(&mut self.tx, conn, wire::frame_size_hint(msg));
        let before = buf.len();
        match wire::encode_into(msg, buf, self.config.max_frame_bytes) {
            Ok(()) => {
                self.stats.frames_out += 1;
                self.stats.bytes_out += (buf.len() - before) as u64;
            }
            Err(e) => {
                let err: WireError = e;
                self.out.push_back(Output::Event(Event::Warning(format!("could not send {}: {err}", msg.kind()))));
            }
        }
    }

    /// `send` of an `IHave` of the ids of `batch`, without building its list.
    pub(super) fn send_ihave(&mut self, conn: ConnId, batch: &[(ConnId, ChatId)]) {
        let buf = tx_buf(&mut self.tx, conn, wire::ihave_frame_size(batch.len()));
        let before = buf.len();
        match wire::encode_ihave_into(batch.iter().map(|(_, id)| id), buf, self.config.max_frame_bytes) {
            Ok(()) => {
                self.stats.frames_out += 1;
                self.stats.bytes_out += (buf.len() - before) as u64;
            }
            Err(e) => {
                self.out.push_back(Output::Event(Event::Warning(format!("could not send IHave: {e}"))));
            }
        }
    }

    /// Handshake bytes go out as they are, ahead of the sealed frames in `tx`.
    pub(super) fn transmit_raw(&mut self, conn: ConnId, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.stats.bytes_out += bytes.len() as u64;
            if let Some(bytes) = self.through_relay(conn, bytes) {
                self.out.push_back(Output::Transmit { conn, bytes });
            }
        }
    }

    pub(super) fn emit(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }
}

/// `conn`'s queue in `tx`, with room for a frame of about `frame` bytes and the record around it.
pub(super) fn tx_buf(tx: &mut ConnMap<Vec<u8>>, conn: ConnId, frame: usize) -> &mut Vec<u8> {
    let buf = tx.entry(conn);
    if buf.is_empty() {
        buf.reserve_exact(session::HEADER_BYTES + frame + session::TAG_BYTES);
        buf.extend_from_slice(&[0; session::HEADER_BYTES]);
    } else {
        // A frame after the first (a few in a hundred queues): room for the tag too, or sealing
        // grows the buffer a second time.
        buf.reserve(frame + session::TAG_BYTES);
    }
    buf
}
