"""PyTorch's numbers for the same measurements `flowercam bench --what model`
makes, on the same machine, for side-by-side comparison in notes.

    python3 benches/pytorch_reference.py [--threads 2] [--size 224] [--batch 32]
"""
import argparse
import time

import torch
import torchvision


def timed(fn, iters):
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--iters", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = torchvision.models.resnet18(weights=None, num_classes=8).eval()
    x = torch.randn(a.batch, 3, a.size, a.size)
    y = torch.arange(a.batch) % 8
    n = a.iters * a.batch
    with torch.no_grad():
        t = timed(lambda: m(x), a.iters)
    print(f"eval forward (batch {a.batch}, {a.size}px)       {n / t:8.1f} img/s")

    def prefix(x):
        return m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))

    with torch.no_grad():
        t = timed(lambda: prefix(x), a.iters)
    print(f"forward up to layer3                    {n / t:8.1f} img/s")
    for p in m.parameters():
        p.requires_grad = False
    for p in list(m.layer4.parameters()) + list(m.fc.parameters()):
        p.requires_grad = True
    opt = torch.optim.Adam([{"params": m.layer4.parameters(), "lr": 1e-4}, {"params": m.fc.parameters(), "lr": 1e-3}])
    m.layer4.train()

    def step(feats=None):
        with torch.no_grad():
            f = prefix(x) if feats is None else feats
        loss = torch.nn.functional.cross_entropy(m.fc(torch.flatten(m.avgpool(m.layer4(f)), 1)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t = timed(step, a.iters)
    print(f"forward + backward through layer4+fc    {n / t:8.1f} img/s")
    with torch.no_grad():
        feats = prefix(x)
    t = timed(lambda: step(feats), a.iters)
    print(f"  same, layer3 output cached            {n / t:8.1f} img/s")


if __name__ == "__main__":
    main()
