//! Bytes on sockets: reading whole protocol units off a stream ([`read`]).

pub mod read;
