//! Framing on the socket.
