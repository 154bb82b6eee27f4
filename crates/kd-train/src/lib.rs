//! kd-train
