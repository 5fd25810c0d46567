"""FID Inception network and FID (domainadapt.divergence.fid_inception); offline, random weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from domainadapt.divergence import (
    FID_WEIGHTS_URL,
    FIDInceptionV3,
    WeightsNotFoundError,
    fid,
    frechet_distance,
    inception_features,
    inception_stats,
    load_fid_inception,
)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    torch.manual_seed(0)
    model = FIDInceptionV3()
    # He init keeps activations O(1) through the 94 conv layers (PyTorch's default init shrinks them
    # into denormals: slow, and every image gets the same features); non-trivial BN parameters and
    # statistics so that a load that skipped them would show.
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.8, 1.2)
            m.bias.data.uniform_(-0.1, 0.1)
            m.running_mean.uniform_(-0.05, 0.05)
            m.running_var.uniform_(0.8, 1.2)
    path = tmp_path_factory.mktemp("fid") / "random_fid_inception.pth"
    torch.save(model.state_dict(), path)
    return path, model.state_dict()


@pytest.fixture(scope="module")
def model(weights_file):
    return load_fid_inception(weights_file[0], device="cpu")


def images(n: int, seed: int, size: int = 32) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_weights_round_trip_and_architecture(weights_file, model):
    _, state = weights_file
    loaded = model.state_dict()
    assert set(loaded) == set(state)
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert model.fc.out_features == 1008 and not model.training
    assert type(model.Mixed_7c).__name__ == "FIDInceptionE_2" and type(model.Mixed_5b).__name__ == "FIDInceptionA"
    assert not any(k.startswith("AuxLogits") for k in loaded)


def test_features_are_2048_d_and_deterministic(model):
    x = images(3, seed=1)
    f = inception_features(x, model, batch_size=2)
    assert f.shape == (3, 2048) and f.dtype == torch.float32
    assert torch.allclose(f, inception_features(x, model, batch_size=3), atol=1e-5)
    assert (f >= 0).all()  # post-ReLU average pool


def test_resize_is_bilinear_to_299_and_input_scaled_to_minus_one_one(model):
    x = images(2, seed=2, size=40)
    with torch.no_grad():
        manual = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        model.resize_input = model.normalize_input = False
        try:
            expected = model(manual)
        finally:
            model.resize_input = model.normalize_input = True
        assert torch.allclose(model(x), expected, atol=1e-6)


def test_tf_pooling_differs_from_torchvision_blocks(model):
    """FIDInceptionA excludes padding from its average pool (TF); torchvision's block includes it."""
    from torchvision.models.inception import InceptionA

    tv = InceptionA(192, pool_features=32).eval()
    tv.load_state_dict(model.Mixed_5b.state_dict())
    x = torch.rand(1, 192, 9, 9)
    with torch.no_grad():
        a, b = model.Mixed_5b(x), tv(x)
    assert torch.allclose(a[:, :-32], b[:, :-32], atol=1e-6)  # branches without pooling agree
    assert not torch.allclose(a[:, -32:], b[:, -32:], atol=1e-4)  # the pooled branch does not


def test_fid_of_a_set_with_itself_is_zero_and_differs_otherwise(model):
    x = images(4, seed=3)
    same = fid(x, x.clone(), model=model, batch_size=2, device="cpu")
    assert same.value < 1e-6 and (same.n1, same.n2) == (4, 4)
    other = fid(x, images(4, seed=4) * 0.5, model=model, batch_size=4, device="cpu")
    assert other.value > 1e-3 and other.value > 1e6 * same.value
    # fid() used the exact nuclear-norm route (n < d); the streamed-stats route gives the same value
    s1 = inception_stats(x, model, batch_size=3)
    s2 = inception_stats(images(4, seed=4) * 0.5, model, batch_size=3)
    assert frechet_distance(s1.mean, s1.covariance, s2.mean, s2.covariance) == pytest.approx(other.value, rel=1e-6)


def test_loader_grayscale_and_uint8_inputs(model):
    gray = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(5))
    f_gray = inception_features([(gray, torch.tensor([0, 1]))], model)
    f_rgb = inception_features(gray.repeat(1, 3, 1, 1), model)
    assert torch.allclose(f_gray, f_rgb, atol=1e-6)
    u8 = (gray.repeat(1, 3, 1, 1) * 255).round().to(torch.uint8)
    assert torch.allclose(inception_features(u8, model), inception_features(u8.float() / 255, model), atol=1e-6)


def test_bad_images(model):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inception_features(torch.rand(2, 3, 16, 16) * 255, model)
    with pytest.raises(ValueError, match="N×3×H×W"):
        inception_features(torch.rand(2, 4, 16, 16), model)


def test_missing_weights_file_names_path_and_source(tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "pt_inception.pth"
    with pytest.raises(WeightsNotFoundError) as err:
        load_fid_inception(missing)
    msg = str(err.value)
    assert str(missing) in msg and FID_WEIGHTS_URL in msg and "allow_download" in msg
    assert isinstance(err.value, FileNotFoundError)
    # no path, no env var, empty hub cache, no download allowed -> the same clear error, no network
    monkeypatch.delenv("DOMAINADAPT_FID_WEIGHTS", raising=False)
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(WeightsNotFoundError, match="not cached"):
            fid(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8), device="cpu")
    finally:
        torch.hub.set_dir(old)


def test_env_var_points_to_weights(weights_file, monkeypatch):
    monkeypatch.setenv("DOMAINADAPT_FID_WEIGHTS", str(weights_file[0]))
    m = load_fid_inception()
    assert torch.equal(m.fc.weight, weights_file[1]["fc.weight"])


def test_matches_pytorch_fid_when_installed(weights_file, model, monkeypatch):
    """Same weights in pytorch-fid's own network give the same features (skipped if not installed; pytorch-fid is in
    the `dev` extra). Offline: pytorch-fid's weight download is replaced by the random weights, and any other
    network connection fails the test."""
    import socket

    pfid = pytest.importorskip("pytorch_fid.inception")
    state = weights_file[1]
    requested = []

    def offline_weights(url, *args, **kwargs):
        requested.append(url)
        return state

    def no_network(*args, **kwargs):
        raise AssertionError(f"the pytorch-fid cross-check tried to open a network connection {args}")

    monkeypatch.setattr(pfid, "load_state_dict_from_url", offline_weights)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    ref = pfid.InceptionV3([3], resize_input=True, normalize_input=True, use_fid_inception=True).eval()
    assert requested == [pfid.FID_WEIGHTS_URL] == [FID_WEIGHTS_URL]  # the weights pytorch-fid would fetch: ours
    x = images(2, seed=6, size=50)
    with torch.no_grad():
        assert torch.allclose(model(x), ref(x)[0].flatten(1), atol=1e-6)
