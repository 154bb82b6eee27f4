//! Token batches: padding, the mask of valid positions, targets per sequence or per position.

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;
use kd_core::{DistillBatch, Targets};
use kd_data::{TokenBatcher, TokenItem};

fn item(tokens: &[u32], label: Option<u32>) -> TokenItem {
    TokenItem {
        tokens: tokens.to_vec(),
        label,
        position_labels: None,
    }
}

fn ints(t: burn::tensor::Tensor<2, burn::tensor::Int>) -> Vec<i64> {
    t.into_data().iter::<i64>().collect()
}

#[test]
fn sequences_are_padded_to_the_longest_and_masked() {
    let device = Device::flex();
    let batch = TokenBatcher::new(0).batch(
        vec![item(&[5, 6, 7], Some(1)), item(&[8], Some(0))],
        &device,
    );
    assert_eq!(ints(batch.tokens.clone()), [5, 6, 7, 8, 0, 0]);
    let mask: Vec<bool> = batch
        .mask()
        .unwrap()
        .int()
        .into_data()
        .iter::<i64>()
        .map(|v| v != 0)
        .collect();
    assert_eq!(mask, [true, true, true, true, false, false]);
    match batch.targets() {
        Some(Targets::Items(t)) => {
            assert_eq!(t.into_data().iter::<i64>().collect::<Vec<_>>(), [1, 0])
        }
        other => panic!("per-sequence targets expected, got {other:?}"),
    }
    assert_eq!(batch.len(), 2);
}

#[test]
fn a_fixed_length_cuts_and_per_position_labels_win_and_unlabelled_items_give_none() {
    let device = Device::flex();
    let tagged = |tokens: &[u32]| TokenItem {
        tokens: tokens.to_vec(),
        label: Some(3),
        position_labels: Some(tokens.iter().map(|t| t + 100).collect()),
    };
    let batch = TokenBatcher::new(9)
        .with_length(2)
        .batch(vec![tagged(&[1, 2, 3]), tagged(&[4])], &device);
    assert_eq!(ints(batch.tokens.clone()), [1, 2, 4, 9]);
    match batch.targets() {
        Some(Targets::Positions(t)) => assert_eq!(ints(t), [101, 102, 104, 9]),
        other => panic!("per-position targets expected, got {other:?}"),
    }
    let unlabelled =
        TokenBatcher::new(0).batch(vec![item(&[1], None), item(&[2], Some(1))], &device);
    assert!(unlabelled.targets().is_none());
    let half = unlabelled.shard(1..2, &device).unwrap();
    assert_eq!(ints(half.tokens), [2]);
}
