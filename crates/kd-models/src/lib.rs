//! kd-models
