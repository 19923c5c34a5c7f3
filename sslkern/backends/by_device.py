"""One backend name over per-device implementations: `native` is the C++ passes on CPU tensors
and the CUDA passes on CUDA tensors. Each primitive goes to the part for its tensors' device;
the dispatcher asks `unsupported` first, so a device without a usable part is refused with that
part's reasons, never sent elsewhere."""
from .base import Backend


class ByDevice(Backend):
    def __init__(self, name, description, parts):
        self.name, self.description = name, description
        self.parts = dict(parts)  # device type -> Backend
        self.devices = tuple(self.parts)

    def availability(self):
        """Usable when any part is; a missing part's reasons surface in unsupported()."""
        if any(not part.availability() for part in self.parts.values()):
            return []
        return [f"{kind}: {why}" for kind, part in self.parts.items() for why in part.availability()]

    def unsupported(self, device, dtype):
        part = self.parts.get(device.type)
        if part is None:
            return [f"runs on {'/'.join(self.parts)} tensors, not {device.type}"]
        return list(part.availability()) + list(part.unsupported(device, dtype))

    def part_for(self, device):
        return self.parts[device.type]

    def philox(self, n, seed, offset, device, normal):
        return self.part_for(device).philox(n, seed, offset, device, normal)

    def corrupt(self, x, *args):
        return self.part_for(x.device).corrupt(x, *args)

    def corrupt_grad(self, grad, *args):
        return self.part_for(grad.device).corrupt_grad(grad, *args)

    def linear_act(self, x, W, *args):
        return self.part_for(W.device).linear_act(x, W, *args)

    def linear_act_backward(self, grad_y, y, x, W, *args):
        return self.part_for(W.device).linear_act_backward(grad_y, y, x, W, *args)

    def contractive(self, x, W, *args):
        return self.part_for(W.device).contractive(x, W, *args)

    def contractive_backward(self, grad, x, W, *args):
        return self.part_for(W.device).contractive_backward(grad, x, W, *args)

    def ae_forward(self, x, W, *args):
        return self.part_for(W.device).ae_forward(x, W, *args)

    def ae_backward(self, grad, x, W, *args):
        return self.part_for(W.device).ae_backward(grad, x, W, *args)

    def ae_value_and_grad(self, x, W, *args):
        return self.part_for(W.device).ae_value_and_grad(x, W, *args)

    def ae_sgd_step(self, x, W, *args):
        return self.part_for(W.device).ae_sgd_step(x, W, *args)
