//! Data parallelism: one batch split over several devices, a thread per device, the gradients
//! gathered on the first device, in every training step of a model set to train on several
//! devices, the gradients weighted so the optimizer sees the same mean gradient as on one
//! device.
//!
//! The threads live as long as the model: Burn's BatchNorm keeps its running statistics per
//! thread and averages them when a thread updates them again, which assumes long-lived
//! workers (as Burn's own `MultiDevicesTrainStep` has).

use std::ops::Range;
use std::sync::Mutex;
use std::sync::mpsc::{Sender, channel};

use burn::tensor::Device;

/// A job for a worker: runs on its thread, answers through the channel it carries.
type Job = Box<dyn FnOnce() + Send>;

/// One long-lived thread per device.
pub(crate) struct Workers {
    devices: Vec<Device>,
    /// Each worker's job queue; dropping them ends the threads.
    queues: Mutex<Vec<Sender<Job>>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("devices", &self.devices)
            .finish()
    }
}

impl Workers {
    /// A thread for each of `devices` (the first is the main device).
    pub(crate) fn new(devices: Vec<Device>) -> Self {
        let queues = devices
            .iter()
            .map(|_| {
                let (send, receive) = channel::<Job>();
                std::thread::spawn(move || {
                    while let Ok(job) = receive.recv() {
                        job();
                    }
                });
                send
            })
            .collect();
        Self {
            devices,
            queues: Mutex::new(queues),
        }
    }

    /// The devices, main one first.
    pub(crate) fn devices(&self) -> &[Device] {
        &self.devices
    }

    /// Run `jobs[i]` on worker `i` (fewer jobs than workers leave the last ones idle) and wait
    /// for every answer, in job order. A job that panics answers with its panic message.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        jobs: Vec<Box<dyn FnOnce() -> R + Send>>,
    ) -> Vec<Result<R, String>> {
        let queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        let (send, receive) = channel::<(usize, Result<R, String>)>();
        let mut sent = 0;
        for (i, job) in jobs.into_iter().enumerate() {
            let send = send.clone();
            let job: Job = Box::new(move || {
                let answer = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))
                    .map_err(|p| panic_message(p.as_ref()));
                let _ = send.send((i, answer));
            });
            if queues[i].send(job).is_ok() {
                sent += 1;
            }
        }
        drop(send);
        let mut answers: Vec<(usize, Result<R, String>)> = receive.iter().take(sent).collect();
        answers.sort_by_key(|(i, _)| *i);
        answers.into_iter().map(|(_, a)| a).collect()
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a training worker panicked".to_string())
}

/// `items` rows cut into at most `parts` contiguous, non-empty ranges whose sizes differ by at
/// most one (the first ones the larger).
pub(crate) fn split_rows(items: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.clamp(1, items.max(1));
    let (size, extra) = (items / parts, items % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let len = size + usize::from(i < extra);
            let range = start..start + len;
            start += len;
            range
        })
        .filter(|r| !r.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_evenly_and_completely() {
        assert_eq!(split_rows(8, 2), vec![0..4, 4..8]);
        assert_eq!(split_rows(7, 3), vec![0..3, 3..5, 5..7]);
        // Fewer items than devices: one item each, the rest idle.
        assert_eq!(split_rows(2, 4), vec![0..1, 1..2]);
        assert_eq!(split_rows(5, 1), vec![0..5]);
        assert!(split_rows(0, 2).is_empty());
    }

    #[test]
    fn answers_come_back_in_job_order_and_panics_are_caught() {
        let workers = Workers::new(vec![Device::default(); 3]);
        let jobs: Vec<Box<dyn FnOnce() -> usize + Send>> = vec![
            Box::new(|| {
                std::thread::sleep(std::time::Duration::from_millis(50));
                10
            }),
            Box::new(|| panic!("out of memory on device 1")),
            Box::new(|| 30),
        ];
        let answers = workers.run(jobs);
        assert_eq!(answers[0], Ok(10));
        assert_eq!(answers[1], Err("out of memory on device 1".to_string()));
        assert_eq!(answers[2], Ok(30));
        // The pool still works after a panic.
        let again: Vec<Box<dyn FnOnce() -> usize + Send>> = vec![Box::new(|| 1), Box::new(|| 2)];
        assert_eq!(workers.run(again), vec![Ok(1), Ok(2)]);
    }
}
