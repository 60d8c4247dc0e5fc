//! The channel subprotocols a client may offer in `Sec-WebSocket-Protocol`, and how the
//! server picks one.

use std::fmt;

/// A negotiated channel protocol, i.e. the `Sec-WebSocket-Protocol` both sides agreed on.
///
/// The variants are listed strongest first, which is the order [`Protocol::all`] returns
/// and the order [`Protocol::negotiate`] prefers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `v5.channel.k8s.io`: binary messages, plus the CLOSE channel (255) used to half-close
    /// a single channel.
    V5,
    /// `v4.channel.k8s.io`: binary messages; the error channel carries a JSON `Status`.
    V4,
    /// `v4.base64.channel.k8s.io`: like [`Protocol::V4`] but every message is text, the
    /// channel an ASCII digit and the payload base64.
    V4Base64,
    /// `channel.k8s.io`: the original binary protocol.
    V1,
    /// `base64.channel.k8s.io`: the original protocol with text/base64 messages.
    V1Base64,
}

/// The protocols the kubelet serves port-forward with, strongest first.
const PORT_FORWARD: [Protocol; 2] = [Protocol::V4, Protocol::V4Base64];

const ALL: [Protocol; 5] = [
    Protocol::V5,
    Protocol::V4,
    Protocol::V4Base64,
    Protocol::V1,
    Protocol::V1Base64,
];

impl Protocol {
    /// The `Sec-WebSocket-Protocol` token naming this protocol.
    pub const fn name(self) -> &'static str {
        match self {
            Protocol::V5 => "v5.channel.k8s.io",
            Protocol::V4 => "v4.channel.k8s.io",
            Protocol::V4Base64 => "v4.base64.channel.k8s.io",
            Protocol::V1 => "channel.k8s.io",
            Protocol::V1Base64 => "base64.channel.k8s.io",
        }
    }

    /// The protocol whose token is `name` (exact, case-sensitive match, surrounding
    /// whitespace ignored), if any.
    pub fn from_name(name: &str) -> Option<Protocol> {
        let name = name.trim();
        ALL.into_iter().find(|p| p.name() == name)
    }

    /// Every protocol, strongest first.
    pub const fn all() -> &'static [Protocol] {
        &ALL
    }

    /// The server's choice: the strongest protocol among those the client `offered`.
    ///
    /// Each element may be a single token or a comma-separated list, as found in one
    /// `Sec-WebSocket-Protocol` header value; unknown tokens are ignored. Returns `None`
    /// when no offered token names a channel protocol.
    pub fn negotiate(offered: &[&str]) -> Option<Protocol> {
        offered
            .iter()
            .flat_map(|value| value.split(','))
            .filter_map(Protocol::from_name)
            .min_by_key(|p| p.rank())
    }

    /// The protocols port-forward is served with, strongest first: `v4.channel.k8s.io` and
    /// `v4.base64.channel.k8s.io` (what a client offers for port-forward).
    pub const fn port_forward_all() -> &'static [Protocol] {
        &PORT_FORWARD
    }

    /// The server's choice for port-forward: the strongest of
    /// [`Protocol::port_forward_all`] among those `offered` (same format as
    /// [`Protocol::negotiate`]). As the kubelet does, a client that offers no subprotocol at
    /// all gets binary framing ([`Protocol::V4`]), and the answer then carries no
    /// `Sec-WebSocket-Protocol` (see [`Protocol::name_for`]). `None` when protocols were
    /// offered but none is supported.
    pub fn negotiate_port_forward(offered: &[&str]) -> Option<Protocol> {
        let mut tokens = offered
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .peekable();
        if tokens.peek().is_none() {
            return Some(Protocol::V4);
        }
        tokens
            .filter_map(Protocol::from_name)
            .filter(|p| PORT_FORWARD.contains(p))
            .min_by_key(|p| p.rank())
    }

    /// The `Sec-WebSocket-Protocol` value a server answers with after choosing `self` from
    /// `offered`: [`Protocol::name`] if the client offered it, or `""`, meaning "send no
    /// `Sec-WebSocket-Protocol` header", when `self` is a fallback the client did not offer
    /// (a WebSocket client rejects a subprotocol it did not ask for).
    pub fn name_for(self, offered: &[&str]) -> &'static str {
        let was_offered = offered
            .iter()
            .flat_map(|value| value.split(','))
            .any(|token| token.trim() == self.name());
        if was_offered { self.name() } else { "" }
    }

    /// Whether this is a pre-v4 protocol (`channel.k8s.io`, `base64.channel.k8s.io`), whose
    /// error channel carries a plain-text message rather than a JSON `Status`.
    pub const fn is_v1(self) -> bool {
        matches!(self, Protocol::V1 | Protocol::V1Base64)
    }

    /// Whether messages are text frames holding an ASCII channel digit and base64 payload.
    pub const fn is_base64(self) -> bool {
        matches!(self, Protocol::V4Base64 | Protocol::V1Base64)
    }

    /// Whether the protocol has the CLOSE channel (255) for half-closing one channel
    /// (only [`Protocol::V5`]).
    pub const fn supports_close(self) -> bool {
        matches!(self, Protocol::V5)
    }

    /// Whether `channel` can be carried as a data channel by this protocol: base64
    /// protocols write the channel as one ASCII digit (0 to 9), and [`Protocol::V5`]
    /// reserves 255 for CLOSE.
    pub const fn carries_channel(self, channel: u8) -> bool {
        if self.is_base64() {
            channel <= 9
        } else if self.supports_close() {
            channel != super::channel::CLOSE
        } else {
            true
        }
    }

    /// Position in the strength order, 0 being the strongest.
    const fn rank(self) -> usize {
        match self {
            Protocol::V5 => 0,
            Protocol::V4 => 1,
            Protocol::V4Base64 => 2,
            Protocol::V1 => 3,
            Protocol::V1Base64 => 4,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_order_is_strongest_first() {
        let names: Vec<_> = Protocol::all().iter().map(|p| p.name()).collect();
        assert_eq!(
            names,
            [
                "v5.channel.k8s.io",
                "v4.channel.k8s.io",
                "v4.base64.channel.k8s.io",
                "channel.k8s.io",
                "base64.channel.k8s.io",
            ]
        );
        for (rank, p) in Protocol::all().iter().enumerate() {
            assert_eq!(p.rank(), rank);
            assert_eq!(Protocol::from_name(p.name()), Some(*p));
            assert_eq!(p.to_string(), p.name());
        }
        assert_eq!(
            Protocol::from_name(" v4.channel.k8s.io "),
            Some(Protocol::V4)
        );
        assert_eq!(Protocol::from_name("V4.CHANNEL.K8S.IO"), None);
        assert_eq!(Protocol::from_name("v3.channel.k8s.io"), None);
    }

    #[test]
    fn negotiate_picks_the_strongest_offered_whatever_the_offer_order() {
        assert_eq!(
            Protocol::negotiate(&["base64.channel.k8s.io", "v4.channel.k8s.io"]),
            Some(Protocol::V4)
        );
        assert_eq!(
            Protocol::negotiate(&[
                "channel.k8s.io",
                "v4.base64.channel.k8s.io",
                "v5.channel.k8s.io"
            ]),
            Some(Protocol::V5)
        );
        assert_eq!(
            Protocol::negotiate(&["base64.channel.k8s.io, channel.k8s.io"]),
            Some(Protocol::V1)
        );
        assert_eq!(
            Protocol::negotiate(&["v4.base64.channel.k8s.io,base64.channel.k8s.io"]),
            Some(Protocol::V4Base64)
        );
        assert_eq!(
            Protocol::negotiate(&["SPDY/3.1", "v3.channel.k8s.io", "portforward.k8s.io"]),
            None
        );
        assert_eq!(Protocol::negotiate(&[]), None);
        assert_eq!(Protocol::negotiate(&[""]), None);
    }

    #[test]
    fn port_forward_negotiation() {
        assert_eq!(
            Protocol::port_forward_all(),
            [Protocol::V4, Protocol::V4Base64]
        );
        assert_eq!(
            Protocol::negotiate_port_forward(&["v4.base64.channel.k8s.io", "v4.channel.k8s.io"]),
            Some(Protocol::V4)
        );
        assert_eq!(
            Protocol::negotiate_port_forward(&["v4.base64.channel.k8s.io"]),
            Some(Protocol::V4Base64)
        );
        // v5 and v1 are not served for port-forward.
        assert_eq!(
            Protocol::negotiate_port_forward(&["v5.channel.k8s.io, channel.k8s.io"]),
            None
        );
        // No offer at all: binary framing, answered without a subprotocol.
        for offered in [&[][..], &[""], &[" , "]] {
            assert_eq!(
                Protocol::negotiate_port_forward(offered),
                Some(Protocol::V4)
            );
            assert_eq!(Protocol::V4.name_for(offered), "");
        }
        assert_eq!(
            Protocol::V4.name_for(&["v4.base64.channel.k8s.io, v4.channel.k8s.io"]),
            "v4.channel.k8s.io"
        );
    }

    #[test]
    fn capabilities() {
        for p in Protocol::all() {
            assert_eq!(
                p.is_base64(),
                matches!(p, Protocol::V4Base64 | Protocol::V1Base64)
            );
            assert_eq!(p.supports_close(), *p == Protocol::V5);
            assert_eq!(p.is_v1(), matches!(p, Protocol::V1 | Protocol::V1Base64));
        }
        assert!(Protocol::V5.carries_channel(254));
        assert!(!Protocol::V5.carries_channel(255));
        assert!(Protocol::V4.carries_channel(255));
        assert!(Protocol::V1.carries_channel(255));
        assert!(Protocol::V4Base64.carries_channel(9));
        assert!(!Protocol::V4Base64.carries_channel(10));
        assert!(!Protocol::V1Base64.carries_channel(10));
    }
}
