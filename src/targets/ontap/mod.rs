//! NetApp ONTAP accounts (`POST /api/security/authentication/password`): one password per
//! account.

pub mod client;
