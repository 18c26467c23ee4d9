"""How a converter's power, energy and area change with its resolution (the ADC/DAC resolution model).

A preset gives its ADCs and DACs at one resolution (ISAAC: 8-bit ADCs, 1-bit DACs); a target may ask
for another. rcc scales the preset's figures by these factors:

- ADC: 2^(bits − reference bits). This is Walden's figure of merit held constant (energy per
  conversion = FOM · 2^bits; Walden, "Analog-to-digital converter survey and analysis", IEEE JSAC
  17(4), 1999), and it is the exponential term of ISAAC's SAR ADC model (its capacitive DAC doubles
  with every bit; the comparator and logic grow linearly). ISAAC does not publish the split between
  the two terms and MNSIM's and NeuroSim's ADC tables are for other converters and nodes, so rcc uses
  the exponential term alone: it charges a 6-bit ADC 1/4 and a 10-bit one 4× ISAAC's 8-bit figures,
  slightly under-charging narrow ADCs and over-charging wide ones against a model with a linear part.
- DAC: (2^bits − 1) / (2^reference bits − 1), the count of unit elements (current sources or
  resistor segments) of a unary DAC: a 2-bit DAC costs 3 1-bit ones.

The sample rate is held: a wider ADC at the same rate is what the exponential term describes.
"""

from __future__ import annotations


def adc_scale(bits: int, reference_bits: int) -> float:
    """Factor on an ADC's power, per-conversion energy and area at `bits` against `reference_bits`."""
    return 2.0 ** (bits - reference_bits)


def dac_scale(bits: int, reference_bits: int) -> float:
    """Factor on a DAC's power, per-drive energy and area at `bits` against `reference_bits`."""
    return (2.0**bits - 1) / (2.0**reference_bits - 1)
