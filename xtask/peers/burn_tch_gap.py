"""Why Burn's tch backend trails PyTorch on the same libtorch: time, in PyTorch itself, the
backward formulations Burn 0.22 uses (burn-tch overrides neither) against libtorch's own kernels,
on ResNet-18's shapes at batch 64, 64×64 (2 threads).

- conv2d backward: Burn computes the input gradient with conv_transpose2d and the weight
  gradient as a conv2d of the batch-swapped input with the batch-swapped output gradient
  (burn-backend ops/modules/conv.rs); libtorch uses convolution_backward.
- batch norm in training: Burn composes it from mean/var/sub/div/mul/add tensor ops; libtorch
  has fused batch_norm kernels.

    python xtask/peers/burn_tch_gap.py
"""
import torch
import torch.nn.functional as F

from pytorch_bench import timed

torch.set_num_threads(2)
torch.manual_seed(0)


# (in, out, kernel, stride, padding, input side) of ResNet-18's convolutions at 64 px.
CONVS = [(3, 64, 7, 2, 3, 64)] + [(64, 64, 3, 1, 1, 16)] * 4 + [
    (64, 128, 3, 2, 1, 16), (128, 128, 3, 1, 1, 8), (64, 128, 1, 2, 0, 16)] + [(128, 128, 3, 1, 1, 8)] * 2 + [
    (128, 256, 3, 2, 1, 8), (256, 256, 3, 1, 1, 4), (128, 256, 1, 2, 0, 8)] + [(256, 256, 3, 1, 1, 4)] * 2 + [
    (256, 512, 3, 2, 1, 4), (512, 512, 3, 1, 1, 2), (256, 512, 1, 2, 0, 4)] + [(512, 512, 3, 1, 1, 2)] * 2
B = 64

native_conv = burn_conv = 0.0
for cin, cout, k, s, p, side in CONVS:
    x = torch.randn(B, cin, side, side)
    w = torch.randn(cout, cin, k, k)
    y = F.conv2d(x, w, stride=s, padding=p)
    g = torch.randn_like(y)

    def native():
        torch.ops.aten.convolution_backward(g, x, w, None, [s, s], [p, p], [1, 1], False, [0, 0], 1,
                                            [True, True, False])

    def burn():
        out_pad = (side + 2 * p - k) % s
        F.conv_transpose2d(g, w, stride=s, padding=p, output_padding=out_pad)
        wg = F.conv2d(x.transpose(0, 1), g.transpose(0, 1), padding=p, dilation=s).transpose(0, 1)
        wg[:, :, :k, :k].contiguous()

    native_conv += timed(native, 2, 7)
    burn_conv += timed(burn, 2, 7)

# Batch norm (training) forward + backward on every BN input of ResNet-18.
BNS = [(64, 32)] + [(64, 16)] * 4 + [(128, 8)] * 5 + [(256, 4)] * 5 + [(512, 2)] * 5
native_bn = burn_bn = 0.0
for c, side in BNS:
    x0 = torch.randn(B, c, side, side)
    gamma, beta = torch.ones(c, requires_grad=True), torch.zeros(c, requires_grad=True)

    def native():
        x = x0.clone().requires_grad_()
        F.batch_norm(x, None, None, gamma, beta, training=True, eps=1e-5).sum().backward()

    def composed():
        x = x0.clone().requires_grad_()
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True)
        y = (x - mean) / (var + 1e-5).sqrt() * gamma.view(1, c, 1, 1) + beta.view(1, c, 1, 1)
        y.sum().backward()

    native_bn += timed(native, 2, 7)
    burn_bn += timed(composed, 2, 7)

print(f"PyTorch {torch.__version__}, 2 threads, ResNet-18 shapes at batch {B}, 64×64\n")
print("| part of one training step | libtorch kernel ms | Burn's formulation ms | ratio |")
print("|---|---|---|---|")
print(f"| conv2d backward (input + weight grads, 20 convs) | {native_conv:.1f} | {burn_conv:.1f} | {burn_conv / native_conv:.2f} |")
print(f"| batch norm train forward + backward (20 BNs) | {native_bn:.1f} | {burn_bn:.1f} | {burn_bn / native_bn:.2f} |")
