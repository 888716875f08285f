//! Background tasks started with the server: the webhook deliverer and the lease reclaimer.
//! Nothing here runs inside a request.

pub mod reclaimer;
pub mod webhook_delivery;
