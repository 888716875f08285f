//! Statistics over labels, as pure functions with no database or HTTP: inter-annotator
//! agreement (nominal labels and rankings), the Bradley-Terry ranking of checkpoints, and the
//! SVG charts of the dashboard.

pub mod agreement;
pub mod charts;
pub mod rank_correlation;
pub mod ranking;
