"""Device models: the device path is exact with perfect cells, the perturbations follow their laws (checked
against formulas written out here independently), faults act where they are, seeds reproduce."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from rcc.backends.device import Device, DeviceError, device_from_dict, load_device, parse_duration, parse_rates
from rcc.backends.faults import STUCK_OFF, STUCK_ON, ListedFaults, RandomFaults, load_fault_map
from rcc.backends.mapping import CrossbarMapping
from rcc.backends.target import Target
from rcc.runtime.crossbar import CrossbarGroup
from rcc.runtime.devices import DeviceCrossbarGroup, NoiseTape, program_array


def _layer(target: Target, shape=(1, 150, 40), seed=0, sparse=False):
    rng = np.random.default_rng(seed)
    weights = rng.integers(-127, 128, size=shape).astype(np.int8)
    if sparse:
        weights[rng.random(shape) < 0.8] = 0
    attrs = {**CrossbarMapping.lowered(target, shape, input_signed=True).attrs(), "packing": "dense"}
    x = rng.integers(-128, 128, size=(7, shape[0] * shape[1])).astype(np.int64)
    return weights, attrs, x


def _device_group(weights, attrs, device, seed=0, faults=None):
    return DeviceCrossbarGroup(weights, attrs, None, None, device, seed, 0, faults, NoiseTape(seed))


@pytest.mark.parametrize("target", [Target(), Target(encoding="offset"), Target(adc_bits=6),
                                    Target(xbar_rows=32, xbar_cols=64, cell_bits=1, dac_bits=2)])
def test_perfect_cells_through_the_device_path_match_the_exact_machine(target):
    weights, attrs, x = _layer(target, shape=(2, 70, 30))
    perfect = Device(programming_noise="constant", programming_sigma=0.0)   # not `ideal`: takes the device path
    expected = CrossbarGroup(weights, attrs).run(x)
    assert np.array_equal(_device_group(weights, attrs, perfect).run(x), expected)


def test_uniform_drift_with_global_compensation_is_exact():
    weights, attrs, x = _layer(Target())
    device = Device(drift="fixed", drift_nu_mean=0.06, drift_nu_std=0.0, time_s=86400.0)
    assert np.array_equal(_device_group(weights, attrs, device).run(x), CrossbarGroup(weights, attrs).run(x))
    uncompensated = Device(drift="fixed", drift_nu_mean=0.06, time_s=86400.0, drift_compensation=False)
    assert not np.array_equal(_device_group(weights, attrs, uncompensated).run(x), CrossbarGroup(weights, attrs).run(x))


def _programmed(device: Device, level: int, level_max: int = 3, cells=(128, 128), seed=0):
    levels = np.full(cells, level)
    return program_array(device, levels, level_max, None, np.random.default_rng(seed))


@pytest.mark.parametrize("level", [1, 2, 3])
def test_pcm_programming_noise_follows_aihwkit_polynomial(level):
    device = Device(programming_noise="pcm", g_max=25.0)
    now, _ = _programmed(device, level)
    target = 25.0 * level / 3
    relative = target / 25.0
    sigma = 0.26348 + 1.9650 * relative - 1.1731 * relative ** 2          # µS, aihwkit PCMLikeNoiseModel
    assert stats.kstest((now.ravel() - target) / sigma, "norm").pvalue > 1e-3


@pytest.mark.parametrize("level", [1, 2, 3])
def test_reram_programming_noise_follows_wan_2022_fit(level):
    device = Device(programming_noise="reram", g_max=40.0)
    now, _ = _programmed(device, level)
    g = 40.0 * level / 3 / 40.0
    sigma = 0.348 + 16.030 * g - 43.853 * g ** 2 + 45.393 * g ** 3 - 16.815 * g ** 4
    assert stats.kstest((now.ravel() - 40.0 * level / 3) / sigma, "norm").pvalue > 1e-3


def test_drift_follows_power_law_with_folded_normal_nu():
    mean, std, t, t0 = 0.05, 0.02, 3600.0, 20.0
    device = Device(drift="fixed", drift_nu_mean=mean, drift_nu_std=std, time_s=t, drift_t0_s=t0)
    now, programmed = _programmed(device, 2)
    nu = -np.log(now / programmed) / np.log((t + t0) / t0)
    assert stats.kstest(nu.ravel(), stats.foldnorm(mean / std, scale=std).cdf).pvalue > 1e-3


def test_pcm_drift_lowers_conductance_and_adds_read_noise():
    device = Device(drift="pcm", time_s=3600.0)
    now, programmed = _programmed(device, 3)
    ratio = now / programmed
    # ν ≥ 0.049 at g̃ = 1 (aihwkit's clip): median drift at least (3620/20)^−0.049 below 1
    assert np.median(ratio) < (3620 / 20) ** -0.049 * 1.01
    assert ratio.std() > 0


def test_ir_drop_first_order_formula():
    device = Device(wire_resistance=100.0)
    now, _ = _programmed(device, 3, cells=(4, 5))
    rows, cols = np.indices((4, 5))
    segments = (cols + 1) + (4 - rows)
    assert np.allclose(now, 25.0 / (1 + 25.0 * 1e-6 * 100.0 * segments))


def test_random_fault_rates_within_sampling_error():
    faults = RandomFaults(0.09, 0.01, seed=3)
    states = np.stack([faults.states(a, 128, 128) for a in range(20)])
    n = states.size
    for state, rate in ((STUCK_OFF, 0.09), (STUCK_ON, 0.01)):
        observed = np.count_nonzero(states == state) / n
        assert abs(observed - rate) < 4 * np.sqrt(rate * (1 - rate) / n)
    assert np.array_equal(faults.states(5, 128, 128), RandomFaults(0.09, 0.01, seed=3).states(5, 128, 128))
    assert not np.array_equal(faults.states(5, 128, 128), RandomFaults(0.09, 0.01, seed=4).states(5, 128, 128))


def test_stuck_cells_read_as_zero_and_top_level():
    target = Target()
    weights = np.zeros((1, 10, 4), dtype=np.int8)
    weights[0, 3, 1] = 5                 # level 1 in slice 0 of output 1 on the positive array
    attrs = {**CrossbarMapping.lowered(target, weights.shape, input_signed=True).attrs(), "packing": "dense"}
    x = np.arange(-5, 5, dtype=np.int64)[None, :] * np.array([[1], [3]])
    slices = target.weight_slices
    # array 0 (positive): row 0, column 0 stuck on (output 0, slice 0); row 3, column slices+0 stuck off
    faults = ListedFaults(np.array([[0, 0, 0, STUCK_ON], [0, 3, slices, STUCK_OFF]]))
    result = _device_group(weights, attrs, Device(stuck_on_rate=0.0), faults=faults).run(x)
    offset = 2 ** (target.input_bits - 1)
    expected = CrossbarGroup(weights, attrs).run(x)
    expected[:, 0] += 3 * (x[:, 0] + offset)        # top level 3 in the least significant slice
    expected[:, 1] -= 1 * (x[:, 3] + offset)        # 5 = 1·4⁰ + 1·4¹: the slice-0 cell reads 0
    assert np.array_equal(result, expected)


def test_same_seed_same_outputs_other_seed_different():
    weights, attrs, x = _layer(Target())
    device = load_device("reram")
    first = _device_group(weights, attrs, device, seed=1).run(x)
    assert np.array_equal(first, _device_group(weights, attrs, device, seed=1).run(x))
    assert not np.array_equal(first, _device_group(weights, attrs, device, seed=2).run(x))


def test_presets_load_and_ideal_is_ideal():
    assert load_device("ideal").is_ideal and load_device("ideal") == Device()
    for name in ("reram", "pcm-aihwkit", "mnsim"):
        assert not load_device(name).is_ideal
    mnsim = load_device("mnsim")
    assert (mnsim.stuck_off_rate, mnsim.stuck_on_rate, mnsim.wire_resistance) == (0.09, 0.01, 2.82)


def test_bad_device_options_and_files(tmp_path):
    with pytest.raises(DeviceError, match="stuck_off_rate"):
        Device(stuck_off_rate=1.5)
    with pytest.raises(DeviceError, match="unknown device key"):
        device_from_dict({"device": {"noise": 1}}, "x.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[device\n")
    with pytest.raises(DeviceError, match="bad.toml: invalid TOML"):
        load_device(str(bad))
    with pytest.raises(DeviceError, match="--faults"):
        parse_rates("0.1,2")
    assert parse_duration("1h") == 3600.0 and parse_duration("30") == 30.0
    fault_file = tmp_path / "faults.csv"
    fault_file.write_text("array,row,column,state\n0,1,2,off\n7,0,0,on\n")
    faults = load_fault_map(fault_file)
    assert faults.states(0, 4, 4)[1, 2] == STUCK_OFF
    with pytest.raises(DeviceError, match="array 7"):
        faults.check(arrays=4, rows=128, cols=128)
    fault_file.write_text("0,1,x,off\n")
    with pytest.raises(DeviceError, match="entry 1"):
        load_fault_map(fault_file)


def test_read_noise_tape_is_standard_normal_and_seeded():
    first = NoiseTape(3).draw(100_000)
    assert stats.kstest(first, "norm").pvalue > 1e-3
    assert np.array_equal(first, NoiseTape(3).draw(100_000))
    assert not np.array_equal(first, NoiseTape(4).draw(100_000))


def test_read_noise_spread_per_column_matches_the_per_cell_sum():
    # zero weights, an ADC offset far from the rails: codes = rint(offset + N(0, σ²)), σ in LSB =
    # read_noise·g_max·√(driven rows)/Δg with Δg = g_max/3 (2-bit cells)
    target = Target(cell_bits=2, weight_bits=3, input_bits=2, dac_bits=2, adc_bits=12)
    weights = np.zeros((1, 100, 1), dtype=np.int8)
    attrs = {**CrossbarMapping.lowered(target, weights.shape, input_signed=False).attrs(), "packing": "dense"}
    x = np.ones((20_000, 100), dtype=np.int64)
    device = Device(read_noise=0.05, adc_offset=100.0)
    group = _device_group(weights, attrs, device, seed=1)
    codes = group.run(x)[:, 0]    # positive minus negative array: the difference of two independent columns
    sigma = 0.05 * 3 * np.sqrt(100)
    expected = np.sqrt(2 * (sigma ** 2 + 1 / 12))       # two columns, each rounded by its ADC
    assert abs(codes.std() / expected - 1) < 0.05
    assert abs(codes.mean()) < 4 * expected / np.sqrt(codes.size)


def test_reads_on_two_threads_give_the_serial_result_bit_for_bit(monkeypatch):
    import rcc.runtime.devices as devices
    import rcc.runtime.threads as threads

    target = Target(xbar_rows=32, xbar_cols=64)
    weights, attrs, _ = _layer(target, shape=(1, 100, 40))
    x = np.random.default_rng(3).integers(-128, 128, size=(50, 100)).astype(np.int64)
    device = load_device("mnsim").with_overrides(read_noise=0.02, adc_offset=0.3)
    monkeypatch.setattr(devices, "CHUNK_ELEMENTS", 1 << 12)     # several chunks per unit, several units
    group = _device_group(weights, attrs, device, seed=4)
    assert len(group.units) > 1 and group._step(group.units[0], x.shape[0]) < x.shape[0]
    monkeypatch.setattr(threads, "READ_THREADS", 1)
    serial = _device_group(weights, attrs, device, seed=4).run(x)
    monkeypatch.setattr(threads, "READ_THREADS", 2)
    assert np.array_equal(group.run(x), serial)


def test_force_sliced_false_is_refused_on_device_cells():
    weights, attrs, x = _layer(Target())
    group = _device_group(weights, attrs, load_device("reram"), seed=1)
    with pytest.raises(DeviceError, match="force_sliced=False"):
        group.run(x, sliced=False)
    assert np.array_equal(group.run(x, sliced=True), _device_group(weights, attrs, load_device("reram"), seed=1).run(x))


def test_reads_in_many_small_blocks_match_the_exact_machine(monkeypatch):
    # blocks smaller than the vectors and the columns (edges included): perfect cells stay exact; an ADC
    # offset below half a step (read by the offsets row every read drives) rounds away, one above it shows
    # (offset encoding: one array per weight, so a uniform offset does not cancel between sign arrays)
    import rcc.runtime.devices as devices

    monkeypatch.setattr(devices, "BLOCK_VECTORS", 3)
    monkeypatch.setattr(devices, "BLOCK_COLUMNS", 7)
    weights, attrs, x = _layer(Target(encoding="offset"), shape=(1, 150, 40))
    perfect = Device(programming_noise="constant", programming_sigma=0.0, adc_offset=0.3)
    group = _device_group(weights, attrs, perfect)
    assert group.units[0].levels.shape[1] > 7 and x.shape[0] > 3
    assert np.array_equal(group.run(x), CrossbarGroup(weights, attrs).run(x))
    shifted = _device_group(weights, attrs, perfect.with_overrides(adc_offset=0.7)).run(x)
    assert not np.array_equal(shifted, CrossbarGroup(weights, attrs).run(x))


def test_int8_operands_read_like_int64_ones():
    # an imported QDQ model may hand the arrays int8 vectors: the offset-binary shift must not overflow them
    weights, attrs, x = _layer(Target(), shape=(1, 150, 40))
    narrow = np.clip(x, -127, 127).astype(np.int8)
    perfect = Device(programming_noise="constant", programming_sigma=0.0)
    expected = CrossbarGroup(weights, attrs).run(narrow.astype(np.int64))
    assert np.array_equal(_device_group(weights, attrs, perfect).run(narrow), expected)
