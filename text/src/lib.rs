//! Text for people, shared by `wormlog` and `wormlog-collector`: records
//! rendered for `cat` ([`render`]) and `cat` itself, sealed entries opened
//! with an identity ([`cat`]), sizes and durations written the way
//! people write them ([`humanize`]), and where in a configuration file an
//! error is ([`location`]).

#![forbid(unsafe_code)]

pub mod bundle;
pub mod cat;
pub mod humanize;
pub mod location;
pub mod render;
