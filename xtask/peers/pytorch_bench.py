"""The `cargo xtask bench-backends` model workloads in PyTorch, for a same-machine comparison with the tch backend.

Same shapes and definitions as src/bench.rs: batch 64 at 64 px (flags), random inputs drawn
fresh each iteration, `--warmup` untimed then the median of `--iters` timed iterations, results
read back. Student: torchvision resnet18(num_classes=2), trained with AdamW(β=(0.9, 0.99),
eps 1e-5, wd 0.01 except BatchNorm and biases). Teacher: resnet34 body + fastai's head, eval
mode, under no_grad. SoftTarget T=5 lerp 0.5; Attention (p=2) on layer1..4, lerp 0.9.

    python xtask/peers/pytorch_bench.py --threads 2
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def fastai_head(nf, n_out):
    class ConcatPool(nn.Module):
        def forward(self, x):
            return torch.cat([F.adaptive_max_pool2d(x, 1), F.adaptive_avg_pool2d(x, 1)], 1)

    return nn.Sequential(
        ConcatPool(), nn.Flatten(),
        nn.BatchNorm1d(2 * nf), nn.Dropout(0.25), nn.Linear(2 * nf, 512, bias=False), nn.ReLU(True),
        nn.BatchNorm1d(512), nn.Dropout(0.5), nn.Linear(512, n_out, bias=False),
    )


class Taps(nn.Module):
    """A torchvision ResNet returning logits and the outputs of layer1..layer4."""

    def __init__(self, net, head=None):
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        taps = []
        for layer in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = layer(x)
            taps.append(x)
        logits = self.head(x) if self.head is not None else n.fc(torch.flatten(n.avgpool(x), 1))
        return logits, taps


def teacher34():
    return Taps(torchvision.models.resnet34(), fastai_head(512, 2)).eval()


def adam(model):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-4, betas=(0.9, 0.99), eps=1e-5,
    )


def soft_target(s, t, T=5.0):
    return F.kl_div(F.log_softmax(s / T, 1), F.log_softmax(t / T, 1), log_target=True,
                    reduction="batchmean") * T * T


def attention(s_taps, t_taps):
    def at(x):
        return F.normalize(x.pow(2).mean(1).flatten(1))

    return sum((at(s) - at(t)).pow(2).mean() for s, t in zip(s_taps, t_taps))


def timed(fn, warmup, iters):
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1e3)
    return statistics.median(ms)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    b, s = a.batch, a.size

    def inputs():
        return torch.randn(b, 3, s, s), torch.randint(0, 2, (b,))

    def train_step(loss_fn):
        student = Taps(torchvision.models.resnet18(num_classes=2)).train()
        opt = adam(student)

        def step():
            x, y = inputs()
            logits, taps = student(x)
            loss = loss_fn(x, y, logits, taps)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss.item()
            student.net.conv1.weight[0, 0, 0, 0].item()

        return step

    teacher = teacher34()

    def teacher_out(x):
        with torch.no_grad():
            return teacher(x)

    def st(x, y, logits, taps):
        t_logits, _ = teacher_out(x)
        return 0.5 * F.cross_entropy(logits, y) + 0.5 * soft_target(logits, t_logits)

    def at(x, y, logits, taps):
        _, t_taps = teacher_out(x)
        return 0.1 * F.cross_entropy(logits, y) + 0.9 * attention(taps, t_taps)

    rows = []
    rows.append(("student train step (resnet18)",
                 timed(train_step(lambda x, y, l, t: F.cross_entropy(l, y)), a.warmup, a.iters)))
    for name, net in [("resnet34", teacher), ("resnet50", Taps(torchvision.models.resnet50(), fastai_head(2048, 2)).eval())]:
        def fwd(net=net):
            with torch.no_grad():
                net(torch.randn(b, 3, s, s))[0][0, 0].item()
        rows.append((f"teacher eval forward ({name})", timed(fwd, a.warmup, a.iters)))
    rows.append(("KD step SoftTarget (r34 → r18)", timed(train_step(st), a.warmup, a.iters)))
    rows.append(("KD step Attention ×4 (r34 → r18)", timed(train_step(at), a.warmup, a.iters)))

    print(f"PyTorch {torch.__version__}, {a.threads} threads; batch {b}, {s}×{s}, "
          f"median of {a.iters} after {a.warmup} warm-up iterations\n")
    print("| backend | workload | median ms | images/s |\n|---|---|---|---|")
    for name, ms in rows:
        print(f"| pytorch | {name} | {ms:.1f} | {b / ms * 1e3:.1f} |")
    student_ms, teacher_ms = rows[0][1], rows[1][1]
    for name, ms in rows[3:]:
        print(f"| pytorch | ratio {name.split()[2]} / (student + teacher) | **{ms / (student_ms + teacher_ms):.3f}** | |")


if __name__ == "__main__":
    main()
