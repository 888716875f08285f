//! Statistics over labels, as pure functions with no database or HTTP: inter-annotator
//! agreement, the Bradley-Terry ranking of checkpoints, and the SVG charts of the dashboard.

pub mod agreement;
pub mod charts;
pub mod ranking;
