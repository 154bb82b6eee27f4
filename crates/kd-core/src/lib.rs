//! kd-core
