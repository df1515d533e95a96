//! Real parts for password-rotator's tests: the local control plane, a real
//! redis-server with ACL users, and the Redis Software REST API test server.
pub mod api_server;
pub mod cluster;
pub mod redis_server;
