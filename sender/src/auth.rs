//! Roles, their password verifiers, and the server side of password, md5 and SCRAM-SHA-256 authentication.
