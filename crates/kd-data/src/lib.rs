//! kd-data
