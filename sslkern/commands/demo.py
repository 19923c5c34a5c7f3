"""Train a small denoising + contractive autoencoder on random binary data and print the loss."""


def add_arguments(parser):
    parser.add_argument("--steps", type=int, default=200)


def run(args):
    import torch

    import sslkern

    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(256, 64, generator=gen) > 0.7).float()
    W = (torch.rand(32, 64, generator=gen) - 0.5).mul_(0.5).requires_grad_()
    b = torch.zeros(32, requires_grad=True)
    c = torch.zeros(64, requires_grad=True)
    for step in range(args.steps):
        loss = sslkern.autoencoder_loss(x, W, b, c, corruption="mask", level=0.25,
                                        contractive=0.1, seed=step)
        W.grad = b.grad = c.grad = None
        loss.backward()
        with torch.no_grad():
            for p in (W, b, c):
                p -= 0.1 * p.grad
        if step % max(args.steps // 5, 1) == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.4f}")
