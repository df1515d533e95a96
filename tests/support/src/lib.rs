//! Real parts for password-rotator's tests: the local control plane, a real
//! redis-server with ACL users, the Redis Software and ONTAP REST API test servers, and
//! certificates made by openssl.
pub mod api_proxy;
pub mod api_server;
pub mod certs;
pub mod cluster;
pub mod ontap_server;
pub mod redis_server;
pub mod redis_topology;
