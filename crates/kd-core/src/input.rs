//! What a model eats: any batch-first tensor, or a tuple of them (token ids and a padding
//! mask, say) — the operations a trainer needs on a model input whatever it holds.

use std::fmt::Debug;
use std::ops::Range;

use burn::tensor::kind::Autodiff;
use burn::tensor::{Device, Int, Tensor};

/// A model input the trainer can move, cut and strip of its autodiff tape without knowing what
/// it holds: every part is batch-first (item `i` of the batch is row `i` of every part).
///
/// Implemented for every tensor (`Tensor<4>` images, `Tensor<2, Int>` token ids, …) and for
/// pairs and triples of inputs, so a text model taking `(tokens, mask)` needs nothing more:
///
/// ```
/// use burn::tensor::{Bool, Device, Int, Tensor};
/// use kd_core::ModelInput;
///
/// let device = Device::flex();
/// let tokens = Tensor::<2, Int>::from_ints([[5, 7, 0], [3, 0, 0]], &device);
/// let mask = tokens.clone().not_equal_elem(0);
/// let input: (Tensor<2, Int>, Tensor<2, Bool>) = (tokens, mask);
/// assert_eq!(input.batch_size(), 2);
/// assert_eq!(input.slice_items(1..2).0.dims(), [1, 3]);
/// ```
pub trait ModelInput: Clone + Send + Sync + Debug + 'static {
    /// Number of items (the first dimension).
    fn batch_size(&self) -> usize;
    /// The device the input lives on.
    fn device(&self) -> Device;
    /// The same input on the tape-free device (what a frozen teacher reads).
    fn without_autodiff(self) -> Self;
    /// The items `rows`, in that order.
    fn select_items(self, rows: Tensor<1, Int>) -> Self;
    /// The items in `rows`.
    fn slice_items(self, rows: Range<usize>) -> Self;
    /// The same input moved to `device` (an autodiff device stays one).
    fn to_device(self, device: &Device) -> Self;
    /// The shape of one item: every dimension but the first, of every part in order. Items
    /// padded to another length have another shape, and a model's outputs on them another
    /// shape too (what the teacher's cache compares before reusing outputs). Empty, the
    /// default for an input type of one's own, says nothing.
    fn item_shape(&self) -> Vec<usize> {
        Vec::new()
    }
}

impl<const D: usize, K: Autodiff + 'static> ModelInput for Tensor<D, K> {
    fn batch_size(&self) -> usize {
        self.dims()[0]
    }
    fn device(&self) -> Device {
        Tensor::device(self)
    }
    fn without_autodiff(self) -> Self {
        Tensor::without_autodiff(self)
    }
    fn select_items(self, rows: Tensor<1, Int>) -> Self {
        let rows = rows.to_device(&Tensor::device(&self));
        self.select(0, rows)
    }
    fn slice_items(self, rows: Range<usize>) -> Self {
        self.narrow(0, rows.start, rows.end - rows.start)
    }
    fn to_device(self, device: &Device) -> Self {
        Tensor::to_device(self, device)
    }
    fn item_shape(&self) -> Vec<usize> {
        self.dims()[1..].to_vec()
    }
}

impl<A: ModelInput, B: ModelInput> ModelInput for (A, B) {
    fn batch_size(&self) -> usize {
        self.0.batch_size()
    }
    fn device(&self) -> Device {
        self.0.device()
    }
    fn without_autodiff(self) -> Self {
        (self.0.without_autodiff(), self.1.without_autodiff())
    }
    fn select_items(self, rows: Tensor<1, Int>) -> Self {
        (self.0.select_items(rows.clone()), self.1.select_items(rows))
    }
    fn slice_items(self, rows: Range<usize>) -> Self {
        (self.0.slice_items(rows.clone()), self.1.slice_items(rows))
    }
    fn to_device(self, device: &Device) -> Self {
        (self.0.to_device(device), self.1.to_device(device))
    }
    fn item_shape(&self) -> Vec<usize> {
        [self.0.item_shape(), self.1.item_shape()].concat()
    }
}

impl<A: ModelInput, B: ModelInput, C: ModelInput> ModelInput for (A, B, C) {
    fn batch_size(&self) -> usize {
        self.0.batch_size()
    }
    fn device(&self) -> Device {
        self.0.device()
    }
    fn without_autodiff(self) -> Self {
        let (a, b, c) = self;
        (
            a.without_autodiff(),
            b.without_autodiff(),
            c.without_autodiff(),
        )
    }
    fn select_items(self, rows: Tensor<1, Int>) -> Self {
        let (a, b, c) = self;
        (
            a.select_items(rows.clone()),
            b.select_items(rows.clone()),
            c.select_items(rows),
        )
    }
    fn slice_items(self, rows: Range<usize>) -> Self {
        let (a, b, c) = self;
        (
            a.slice_items(rows.clone()),
            b.slice_items(rows.clone()),
            c.slice_items(rows),
        )
    }
    fn to_device(self, device: &Device) -> Self {
        let (a, b, c) = self;
        (
            a.to_device(device),
            b.to_device(device),
            c.to_device(device),
        )
    }
    fn item_shape(&self) -> Vec<usize> {
        [
            self.0.item_shape(),
            self.1.item_shape(),
            self.2.item_shape(),
        ]
        .concat()
    }
}
