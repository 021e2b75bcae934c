"""datasets_builder.xp and the cleaning constants: one home for the XP and survey conventions."""

from __future__ import annotations

import numpy as np
import pytest

from datasets_builder import constants
from datasets_builder.constants import G_ZERO_POINT, XP_N_COEFFICIENTS
from datasets_builder.xp import XP_NAMES, g_band_flux, xp_names, xp_order
from modeling_stellar import StarTokenizer
from tests.conftest import VOCABULARY_FILE


def test_names_orders_and_the_vocabulary_agree():
    assert XP_NAMES[:2] == ("bp0", "bp1") and XP_NAMES[XP_N_COEFFICIENTS] == "rp0" and len(XP_NAMES) == 110
    assert xp_names(0, 30)[-1] == "rp29" and len(xp_names(25, 55)) == 60
    assert [xp_order(n) for n in ("bp0", "rp54", "bprp", "teff", "bp")] == [0, 54, -1, -1, -1]
    vocabulary = StarTokenizer.from_pretrained(str(VOCABULARY_FILE)).observation_names
    assert [n for n in vocabulary if xp_order(n) >= 0] == list(XP_NAMES)


def test_g_band_flux_is_the_design_zero_point():
    # DESIGN.md: XP coefficients divided by 10**((25.6873668671 - G)/2.5), Riello et al. 2021 Table 2
    assert G_ZERO_POINT.value == 25.6873668671
    np.testing.assert_allclose(
        g_band_flux(np.array([G_ZERO_POINT.value, G_ZERO_POINT.value - 5.0])), [1.0, 100.0]
    )


@pytest.mark.parametrize("name", ["APOGEE_SENTINEL_MAX", "MAGNITUDE_SENTINEL_MIN", "AK_TARG_MIN"])
def test_cleaning_rules_have_one_home_with_a_source(name):
    rule = getattr(constants, name)
    assert rule.reference and rule.name
    from datasets_builder import apogee, library

    for reader in (apogee, library):  # both readers use the shared rule, neither defines its own
        assert getattr(reader, name) is rule
