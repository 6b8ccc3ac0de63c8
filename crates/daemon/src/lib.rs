//! facegate-daemon: the appliance's daemon around `facegate-core`.
//!
//! `api` (the HTTP API, its listener and auth), `camera` (frame sources and capture threads),
//! `mqtt` (events, the durable outbox, the publisher and its session), `daemon` (the main job:
//! camera workers, the MQTT link, systemd, metrics), `fleet` (the gallery replicated between appliances), `door` (the door controller, `facegate
//! door`) and `doctor` (installation checks).

pub mod api;
pub mod camera;
pub mod daemon;
pub mod doctor;
pub mod door;
pub mod fleet;
pub mod mqtt;
