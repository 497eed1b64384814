//! `mobium-federation`: the homeserver ↔ homeserver protocol (spec `federation.md`): QUIC links,
//! DNS discovery, signed frames and outbox delivery. The wire types live in `mobium-spec`
//! (`mobium_spec::federation`); the transport lands with the federation issue.
