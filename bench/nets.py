"""ImageNet- and CIFAR-sized networks for the machine benchmark, built with onnx.helper and random weights.

Light VGG-19 (143 M weights) and ResNet-50 (25.6 M) at 224×224, and a CIFAR ResNet-18 (11.2 M weights,
32×32 inputs, 3×3 stem, no max-pool). Batch normalisation is folded away (conv with bias); weights are
He-normal with a seeded generator, so every run times the same models. onnx's own "light" models hold
the same value in every weight, which makes the ADC's saturation pattern unrealistic; these do not.
"""

from __future__ import annotations

import math

import onnx
from onnx import helper

from deconv import GraphBuilder  # bench/ is the script's folder


class NetBuilder(GraphBuilder):
    """GraphBuilder with the layers of image classifiers."""

    def conv(self, x: str, name: str, cin: int, cout: int, kernel: int, stride: int = 1, relu: bool = True) -> str:
        weight = self.rng.standard_normal((cout, cin, kernel, kernel)) * math.sqrt(2 / (cin * kernel * kernel))
        inputs = [x, self.tensor(f"{name}.weight", weight), self.tensor(f"{name}.bias", 0.01 * self.rng.standard_normal(cout))]
        self.nodes.append(helper.make_node("Conv", inputs, [name], name=name, kernel_shape=[kernel, kernel],
                                           strides=[stride, stride], pads=[kernel // 2] * 4))
        return self.relu(name) if relu else name

    def relu(self, x: str) -> str:
        self.nodes.append(helper.make_node("Relu", [x], [f"{x}.relu"], name=f"{x}.relu"))
        return f"{x}.relu"

    def max_pool(self, x: str, name: str, kernel: int, stride: int, pad: int = 0) -> str:
        self.nodes.append(helper.make_node("MaxPool", [x], [name], name=name, kernel_shape=[kernel, kernel],
                                           strides=[stride, stride], pads=[pad] * 4))
        return name

    def classifier(self, x: str, features: int, classes: int, pool: bool = True) -> str:
        if pool:
            self.nodes.append(helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"))
            x = "gap"
        self.nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flat"))
        return self.dense("flat", "fc", features, classes)

    def dense(self, x: str, name: str, features: int, outputs: int) -> str:
        weight = self.tensor(f"{name}.weight", self.rng.standard_normal((features, outputs)) * math.sqrt(2 / features))
        self.nodes.append(helper.make_node("MatMul", [x, weight], [name], name=name))
        return name


def vgg19() -> onnx.ModelProto:
    builder = NetBuilder(seed=19)
    x, channels = "image", 3
    for stage, (width, convs) in enumerate(((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))):
        for index in range(convs):
            x, channels = builder.conv(x, f"conv{stage + 1}_{index + 1}", channels, width, 3), width
        x = builder.max_pool(x, f"pool{stage + 1}", 2, 2)
    builder.nodes.append(helper.make_node("Flatten", [x], ["flat"], name="flat"))
    x = builder.relu(builder.dense("flat", "fc6", 512 * 7 * 7, 4096))
    x = builder.relu(builder.dense(x, "fc7", 4096, 4096))
    builder.dense(x, "fc8", 4096, 1000)
    return builder.model("vgg19", {"image": [1, 3, 224, 224]}, "fc8", [1, 1000])


def _residual(builder: NetBuilder, x: str, y: str, name: str) -> str:
    return builder.relu(builder.add(y, x, f"{name}.add"))


def resnet50() -> onnx.ModelProto:
    builder = NetBuilder(seed=50)
    x = builder.max_pool(builder.conv("image", "stem", 3, 64, 7, 2), "pool", 3, 2, 1)
    channels = 64
    for stage, (width, blocks) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
        for block in range(blocks):
            stride, name = (2 if stage > 0 and block == 0 else 1), f"s{stage}b{block}"
            y = builder.conv(x, f"{name}.reduce", channels, width, 1)
            y = builder.conv(y, f"{name}.conv", width, width, 3, stride)
            y = builder.conv(y, f"{name}.expand", width, 4 * width, 1, relu=False)
            shortcut = x if block > 0 else builder.conv(x, f"{name}.proj", channels, 4 * width, 1, stride, relu=False)
            x, channels = _residual(builder, shortcut, y, name), 4 * width
    builder.classifier(x, channels, 1000)
    return builder.model("resnet50", {"image": [1, 3, 224, 224]}, "fc", [1, 1000])


def cifar_resnet18() -> onnx.ModelProto:
    builder = NetBuilder(seed=18)
    x, channels = builder.conv("image", "stem", 3, 64, 3), 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            stride, name = (2 if stage > 0 and block == 0 else 1), f"s{stage}b{block}"
            y = builder.conv(builder.conv(x, f"{name}.conv1", channels, width, 3, stride), f"{name}.conv2", width,
                             width, 3, relu=False)
            shortcut = x if stride == 1 and channels == width else \
                builder.conv(x, f"{name}.proj", channels, width, 1, stride, relu=False)
            x, channels = _residual(builder, shortcut, y, name), width
    builder.classifier(x, channels, 10)
    return builder.model("cifar_resnet18", {"image": [1, 3, 32, 32]}, "fc", [1, 10])


NETS = {"vgg19": vgg19, "resnet50": resnet50, "cifar_resnet18": cifar_resnet18}
