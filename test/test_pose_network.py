"""The pose network is trt_pose's resnet18_baseline_att: the same state dict keys and shapes, trt_pose's checkpoints
load into it strictly and give the same cmap and paf; other trt_pose models and mismatched topologies are refused
naming what differs."""
import json

import pytest
import torch
import torchvision

from jetracer_trt.errors import JetracerError
from jetracer_trt.pose import load_topology, topology_from_category
from jetracer_trt.pose.network import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_pose_network,
    load_trt_pose_checkpoint,
    trt_pose_variant,
)

TOPOLOGY = load_topology()


# ---------------------------------------------------------------------------------------------------------------
# Test reference: trt_pose's published architecture (trt_pose/models/common.py and resnet.py, NVIDIA-AI-IOT/trt_pose,
# MIT licence) transcribed: UpsampleCBR, CmapPafHead, CmapPafHeadAttention, ResNetBackbone, and the *_baseline and
# *_baseline_att constructors (upsample_channels=256, num_upsample=3, num_flat=0).
# ---------------------------------------------------------------------------------------------------------------

class ReferenceUpsampleCBR(torch.nn.Sequential):
    def __init__(self, input_channels, output_channels, count=1, num_flat=0):
        layers = []
        for i in range(count):
            inch = input_channels if i == 0 else output_channels
            layers += [torch.nn.ConvTranspose2d(inch, output_channels, kernel_size=4, stride=2, padding=1),
                       torch.nn.BatchNorm2d(output_channels), torch.nn.ReLU()]
            for _ in range(num_flat):
                layers += [torch.nn.Conv2d(output_channels, output_channels, kernel_size=3, stride=1, padding=1),
                           torch.nn.BatchNorm2d(output_channels), torch.nn.ReLU()]
        super().__init__(*layers)


class ReferenceCmapPafHeadAttention(torch.nn.Module):
    def __init__(self, input_channels, cmap_channels, paf_channels, upsample_channels=256, num_upsample=0,
                 num_flat=0):
        super().__init__()
        self.cmap_up = ReferenceUpsampleCBR(input_channels, upsample_channels, num_upsample, num_flat)
        self.paf_up = ReferenceUpsampleCBR(input_channels, upsample_channels, num_upsample, num_flat)
        self.cmap_att = torch.nn.Conv2d(upsample_channels, upsample_channels, kernel_size=3, stride=1, padding=1)
        self.paf_att = torch.nn.Conv2d(upsample_channels, upsample_channels, kernel_size=3, stride=1, padding=1)
        self.cmap_conv = torch.nn.Conv2d(upsample_channels, cmap_channels, kernel_size=1, stride=1, padding=0)
        self.paf_conv = torch.nn.Conv2d(upsample_channels, paf_channels, kernel_size=1, stride=1, padding=0)

    def forward(self, x):
        xc = self.cmap_up(x)
        ac = torch.sigmoid(self.cmap_att(xc))
        xp = self.paf_up(x)
        ap = torch.tanh(self.paf_att(xp))
        return self.cmap_conv(xc * ac), self.paf_conv(xp * ap)


class ReferenceCmapPafHead(torch.nn.Module):
    def __init__(self, input_channels, cmap_channels, paf_channels, upsample_channels=256, num_upsample=0,
                 num_flat=0):
        super().__init__()
        self.cmap_conv = torch.nn.Sequential(
            ReferenceUpsampleCBR(input_channels, upsample_channels, num_upsample, num_flat),
            torch.nn.Conv2d(upsample_channels, cmap_channels, kernel_size=1, stride=1, padding=0))
        self.paf_conv = torch.nn.Sequential(
            ReferenceUpsampleCBR(input_channels, upsample_channels, num_upsample, num_flat),
            torch.nn.Conv2d(upsample_channels, paf_channels, kernel_size=1, stride=1, padding=0))

    def forward(self, x):
        return self.cmap_conv(x), self.paf_conv(x)


class ReferenceResNetBackbone(torch.nn.Module):
    def __init__(self, resnet):
        super().__init__()
        self.resnet = resnet

    def forward(self, x):
        x = self.resnet.maxpool(self.resnet.relu(self.resnet.bn1(self.resnet.conv1(x))))
        return self.resnet.layer4(self.resnet.layer3(self.resnet.layer2(self.resnet.layer1(x))))


class ReferenceDenseNetBackbone(torch.nn.Module):
    def __init__(self, densenet):
        super().__init__()
        self.densenet = densenet


def reference_resnet_pose(name="resnet18", cmap_channels=18, paf_channels=42, attention=True, num_flat=0,
                          upsample_channels=256):
    resnet = getattr(torchvision.models, name)(weights=None)
    features = 512 if name in ("resnet18", "resnet34") else 2048
    head = ReferenceCmapPafHeadAttention if attention else ReferenceCmapPafHead
    return torch.nn.Sequential(ReferenceResNetBackbone(resnet),
                               head(features, cmap_channels, paf_channels, upsample_channels, 3, num_flat))


def reference_resnet18_baseline_att(cmap_channels=18, paf_channels=42):
    return reference_resnet_pose("resnet18", cmap_channels, paf_channels)


def randomized(model, seed=0):
    """Random weights and BatchNorm statistics, so that every parameter and buffer matters to the output."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if tensor.is_floating_point():
                values = torch.rand(tensor.shape, generator=generator)
                tensor.copy_(values + 0.5 if name.endswith("running_var") else (values - 0.5) * 0.2)
    return model.eval()


@pytest.fixture(scope="module")
def trt_pose_checkpoint(tmp_path_factory):
    """A checkpoint as trt_pose's train.py writes one (``torch.save(model.state_dict())``), random weights."""
    torch.manual_seed(0)
    model = randomized(reference_resnet18_baseline_att())
    path = tmp_path_factory.mktemp("trt_pose") / "resnet18_baseline_att_224x224_A_epoch_249.pth"
    torch.save(model.state_dict(), path)
    return path, model


def image(seed=1, size=224):
    """An ImageNet-normalised RGB frame, as trt_pose's live demo feeds its model."""
    pixels = torch.rand((1, 3, size, size), generator=torch.Generator().manual_seed(seed))
    return (pixels - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


# ---------------------------------------------------------------------------------------------------------------

def test_the_state_dict_is_trt_pose_s_key_for_key_shape_for_shape():
    ours = build_pose_network(TOPOLOGY).state_dict()
    reference = reference_resnet18_baseline_att().state_dict()
    assert [(k, tuple(v.shape)) for k, v in ours.items()] == [(k, tuple(v.shape)) for k, v in reference.items()]
    # the layout the published checkpoint has: torchvision names under 0.resnet (fc kept), the attention head
    assert ours["0.resnet.fc.weight"].shape == (1000, 512) and ours["0.resnet.layer4.1.bn2.running_var"].shape == (512,)
    assert [key for key in ours if key.startswith("1.cmap_up.") and key.endswith(".weight")] == \
        ["1.cmap_up.0.weight", "1.cmap_up.1.weight", "1.cmap_up.3.weight", "1.cmap_up.4.weight",
         "1.cmap_up.6.weight", "1.cmap_up.7.weight"]
    assert ours["1.cmap_up.0.weight"].shape == (512, 256, 4, 4) and ours["1.paf_att.weight"].shape == (256, 256, 3, 3)
    assert ours["1.cmap_att.bias"].shape == (256,)
    assert ours["1.cmap_conv.weight"].shape == (18, 256, 1, 1) and ours["1.paf_conv.weight"].shape == (42, 256, 1, 1)
    # 21.3 M weights, 81 MiB as FP32: the size trt_pose gives for the published file's download
    assert sum(v.numel() for k, v in ours.items() if "running" not in k and "num_batches" not in k) == 21_278_308


def test_a_trt_pose_checkpoint_loads_strictly_and_gives_trt_pose_s_maps(trt_pose_checkpoint):
    path, reference = trt_pose_checkpoint
    model = load_trt_pose_checkpoint(path, TOPOLOGY)
    assert not model.training
    frame = image()
    with torch.no_grad():
        cmap, paf = model(frame)
        expected_cmap, expected_paf = reference(frame)
    assert cmap.shape == (1, 18, 56, 56) and paf.shape == (1, 42, 56, 56)
    torch.testing.assert_close(cmap, expected_cmap, rtol=0, atol=1e-6)
    torch.testing.assert_close(paf, expected_paf, rtol=0, atol=1e-6)
    assert float(expected_cmap.std()) > 0.01 and float(expected_paf.std()) > 0.01
    # and the other way: our state dict loads into trt_pose's model, strictly
    reference_again = reference_resnet18_baseline_att()
    reference_again.load_state_dict(model.state_dict(), strict=True)
    # a state dict, or a checkpoint dict that holds one under state_dict, loads the same
    state = torch.load(path, weights_only=True)
    for source in (state, {"state_dict": state, "epoch": 249}):
        with torch.no_grad():
            torch.testing.assert_close(load_trt_pose_checkpoint(source, TOPOLOGY)(frame)[1], expected_paf,
                                       rtol=0, atol=1e-6)


def test_the_attention_gates_are_sigmoid_for_cmap_and_tanh_for_paf():
    torch.manual_seed(0)
    model = randomized(build_pose_network(TOPOLOGY), seed=3)
    head = model[1]
    features = torch.randn(1, 512, 7, 7)
    with torch.no_grad():
        cmap, paf = head(features)
        up_c, up_p = head.cmap_up(features), head.paf_up(features)
        torch.testing.assert_close(cmap, head.cmap_conv(up_c * torch.sigmoid(head.cmap_att(up_c))))
        torch.testing.assert_close(paf, head.paf_conv(up_p * torch.tanh(head.paf_att(up_p))))


def test_another_trt_pose_model_is_refused_by_name(tmp_path):
    with torch.device("meta"):
        others = {
            "resnet50_baseline_att": reference_resnet_pose("resnet50"),
            "resnet34_baseline_att": reference_resnet_pose("resnet34"),
            "resnet18_baseline": reference_resnet_pose("resnet18", attention=False),
            "densenet121_baseline_att": torch.nn.Sequential(
                ReferenceDenseNetBackbone(torchvision.models.densenet121(weights=None)),
                ReferenceCmapPafHeadAttention(1024, 18, 42, 256, 3)),
        }
    for name, model in others.items():
        state = model.state_dict()
        assert trt_pose_variant(state) == name
        with pytest.raises(JetracerError, match=f"is trt_pose's {name}; only resnet18_baseline_att is supported"):
            load_trt_pose_checkpoint(state, TOPOLOGY)
    with torch.device("meta"):
        flat = reference_resnet_pose("resnet18", num_flat=1).state_dict()
        narrow = reference_resnet_pose("resnet18", upsample_channels=128).state_dict()
    with pytest.raises(JetracerError, match="3 upsampling stages and 3 flat convolutions"):
        load_trt_pose_checkpoint(flat, TOPOLOGY)
    with pytest.raises(JetracerError, match="head has 128 channels; resnet18_baseline_att has 256"):
        load_trt_pose_checkpoint(narrow, TOPOLOGY)
    road = torchvision.models.resnet18(weights=None).state_dict()  # a JetRacer road-following state dict
    with pytest.raises(JetracerError, match="is not a trt_pose checkpoint"):
        load_trt_pose_checkpoint(road, TOPOLOGY)


def test_a_checkpoint_for_another_topology_is_refused_naming_the_channels(tmp_path, trt_pose_checkpoint):
    path, _ = trt_pose_checkpoint
    coco = json.load(open(TOPOLOGY.source))
    coco["keypoints"] = coco["keypoints"][:17]  # COCO's own 17 keypoints: no neck, and no links to it
    coco["skeleton"] = [pair for pair in coco["skeleton"] if 18 not in pair]
    seventeen = topology_from_category(coco, "coco17.json")
    with pytest.raises(JetracerError) as error:
        load_trt_pose_checkpoint(path, seventeen)
    message = str(error.value)
    assert str(path) in message and "coco17.json" in message
    assert "cmap has 18 channels, the topology has 17 keypoints" in message
    assert "paf has 42 channels, the topology's 16 links need 32" in message


def test_missing_unexpected_and_reshaped_keys_are_named(trt_pose_checkpoint):
    path, _ = trt_pose_checkpoint
    state = dict(torch.load(path, weights_only=True))
    del state["0.resnet.layer3.0.bn1.running_mean"]
    state["1.extra.weight"] = torch.zeros(3)
    state["0.resnet.fc.weight"] = torch.zeros(10, 512)
    with pytest.raises(JetracerError) as error:
        load_trt_pose_checkpoint(state, TOPOLOGY)
    message = str(error.value)
    assert "missing keys: 0.resnet.layer3.0.bn1.running_mean" in message
    assert "unexpected keys: 1.extra.weight" in message
    assert "other shapes: 0.resnet.fc.weight (10, 512) (expected (1000, 512))" in message


def test_unreadable_files_are_refused_in_one_line(tmp_path):
    with pytest.raises(JetracerError, match="not found"):
        load_trt_pose_checkpoint(tmp_path / "missing.pth", TOPOLOGY)
    torn = tmp_path / "torn.pth"
    torn.write_bytes(b"PK\x03\x04 not a whole file")
    with pytest.raises(JetracerError, match="not a readable PyTorch checkpoint") as error:
        load_trt_pose_checkpoint(torn, TOPOLOGY)
    assert "\n" not in str(error.value)
    engine = tmp_path / "resnet18_baseline_att_224x224_A_epoch_249_trt.pth"
    torch.save({"engine": b"\x00", "input_names": ["input_0"], "output_names": ["output_0", "output_1"]}, engine)
    with pytest.raises(JetracerError, match="torch2trt TensorRT module"):
        load_trt_pose_checkpoint(engine, TOPOLOGY)


# ---------------------------------------------------------------------------------------------------------------
# Our small network, pose_small_resnet18_l2: built, saved and loaded by its name, never mistaken for trt_pose's.


def small_checkpoint(tmp_path, architecture=None):
    from jetracer_trt.contract import pose_contract
    from jetracer_trt.model import save_checkpoint
    from jetracer_trt.pose.checkpoint import make_pose_checkpoint
    from jetracer_trt.pose.network import SMALL_VARIANT, build_network

    torch.manual_seed(0)
    model = randomized(build_network(SMALL_VARIANT, TOPOLOGY)).eval()
    data = make_pose_checkpoint(model, half=False, contract=pose_contract(TOPOLOGY), kind="best")
    if architecture is not None:
        data["architecture"] = architecture
    path = tmp_path / "small.pt"
    save_checkpoint(data, path)
    return path, model


def test_the_small_network_gives_the_contract_s_maps_from_resnet18_s_first_layers():
    from jetracer_trt.pose.network import SMALL_VARIANT, architecture_of, build_network

    model = build_network(SMALL_VARIANT, TOPOLOGY).eval()
    with torch.no_grad():
        cmap, paf = model(torch.zeros(2, 3, 224, 224))
    assert tuple(cmap.shape) == (2, 18, 56, 56) and tuple(paf.shape) == (2, 42, 56, 56)
    assert architecture_of(model) == SMALL_VARIANT and architecture_of(build_pose_network(TOPOLOGY)) == \
        "resnet18_baseline_att"
    state = model.state_dict()
    assert trt_pose_variant(state) is None  # no 0.resnet.*: never taken for one of trt_pose's models
    resnet = torchvision.models.resnet18(weights=None).state_dict()
    backbone = {key[2:]: value.shape for key, value in state.items() if key.startswith("0.")}
    assert backbone == {key: value.shape for key, value in resnet.items()
                        if key.split(".")[0] in ("conv1", "bn1", "layer1", "layer2")}
    assert sum(p.numel() for p in model.parameters()) < 1.2e6  # trt_pose's: 12.8 M


def test_the_small_checkpoint_round_trips_and_every_loader_builds_it_by_name(tmp_path):
    from jetracer_trt.engines.torch_engine import load_network
    from jetracer_trt.pose.checkpoint import load_pose_checkpoint
    from jetracer_trt.pose.network import SMALL_VARIANT, architecture_of

    path, model = small_checkpoint(tmp_path)
    x = image()
    with torch.no_grad():
        expected = model(x)
    for loaded in (load_pose_checkpoint(path)[0], load_network(path)[0]):
        assert architecture_of(loaded) == SMALL_VARIANT
        with torch.no_grad():
            got = loaded(x)
        assert all(torch.equal(a, b) for a, b in zip(got, expected, strict=True))


def test_an_unknown_architecture_is_refused_by_name(tmp_path):
    from jetracer_trt.pose import train as pose_train
    from jetracer_trt.pose.checkpoint import load_pose_checkpoint
    from jetracer_trt.pose.network import build_network

    path, _ = small_checkpoint(tmp_path, architecture="pose_tiny_mobilenet")
    with pytest.raises(JetracerError, match="unknown pose architecture 'pose_tiny_mobilenet'; this package builds "
                                            "resnet18_baseline_att, pose_small_resnet18_l2"):
        load_pose_checkpoint(path)
    with pytest.raises(JetracerError, match="unknown pose architecture 'resnet50'"):
        build_network("resnet50", TOPOLOGY)
    with pytest.raises(JetracerError, match="arch: unknown pose architecture 'big'"):
        pose_train.resolve_settings({"arch": "big"})


def test_a_small_state_dict_named_as_trt_pose_s_model_is_refused_strictly(tmp_path):
    from jetracer_trt.pose.checkpoint import load_pose_checkpoint

    path, _ = small_checkpoint(tmp_path, architecture="resnet18_baseline_att")
    with pytest.raises(JetracerError, match="does not fit resnet18_baseline_att"):
        load_pose_checkpoint(path)
