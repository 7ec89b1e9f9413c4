//! Syslog: RFC 5424, RFC 3164 and RFC 6587 framing (to be written).
