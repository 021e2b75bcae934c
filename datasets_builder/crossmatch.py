"""Join dataset rows from two surveys: by Gaia DR3 ``source_id``, else by sky position.

The identifier join is exact: APOGEE DR17 carries ``GAIAEDR3_SOURCE_ID`` for most stars, and Gaia DR3
kept the EDR3 source list and identifiers (Gaia Collaboration, Vallenari et al. 2023, A&A 674, A1).
Rows of the second table that have no identifier are matched by position with astropy's
``SkyCoord.match_to_catalog_sky``, one-to-one (a star keeps its nearest partner), within
`DEFAULT_RADIUS`.

Epochs. Gaia DR3 positions are at epoch J2016.0 (`GAIA_DR3_EPOCH`; Lindegren et al. 2021, A&A 649, A2);
the allStar ``RA``/``DEC`` are 2MASS positions, observed 1997-2001 (Skrutskie et al. 2006, AJ 131, 1163),
taken here as `TWOMASS_EPOCH` = 2000.0. A star moving 60 mas/yr shifts ~1 arcsec in those 16 years, so when
the Gaia table has ``pmra``/``pmdec`` (mas/yr) its positions are first moved back to the 2MASS epoch
(linear motion; the error of the linear approximation is far below 1 arcsec except within a few arcmin
of a pole). Without proper motions, stars faster than ~60 mas/yr can fall outside a 1 arcsec radius.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DEFAULT_RADIUS_ARCSEC",
    "GAIA_DR3_EPOCH",
    "TWOMASS_EPOCH",
    "join_rows",
    "match_by_position",
    "missing_value",
    "match_by_source_id",
]

DEFAULT_RADIUS_ARCSEC = 1.0
"""Positional match radius [arcsec]: 2MASS positions are good to ~0.1 arcsec (Skrutskie et al. 2006,
Sect. 3) and Gaia's to < 1 mas; 1 arcsec leaves room for unmodelled proper motion while two stars as
bright as APOGEE targets rarely lie that close."""

GAIA_DR3_EPOCH = 2016.0
"""Reference epoch of Gaia DR3 positions [Julian year] (Lindegren et al. 2021, Sect. 2)."""

TWOMASS_EPOCH = 2000.0
"""Epoch adopted for 2MASS (allStar) positions [Julian year]: mid-point of the 1997-2001 survey."""

MISSING_ID = -1
"""Identifier value that means "no identifier" (`datasets_builder.apogee.NO_SOURCE_ID`)."""

_MAS_PER_DEG = 3.6e6


def match_by_source_id(left_ids: np.ndarray, right_ids: np.ndarray) -> np.ndarray:
    """For each left identifier, the index of the right row with the same identifier.

    Parameters
    ----------
    left_ids, right_ids : numpy.ndarray of int64, shapes (n,) and (m,)
        Gaia DR3 source ids; values <= 0 mean "no identifier" and never match.

    Returns
    -------
    numpy.ndarray of int64, shape (n,)
        Index into ``right_ids``, or -1 where there is no match.

    Raises
    ------
    ValueError
        If a (valid) identifier appears twice in ``right_ids``: the join would be ambiguous.
    """
    left_ids = np.asarray(left_ids, dtype=np.int64)
    right_ids = np.asarray(right_ids, dtype=np.int64)
    valid = np.flatnonzero(right_ids > 0)
    order = valid[np.argsort(right_ids[valid], kind="stable")]
    sorted_ids = right_ids[order]
    repeated = sorted_ids[1:][sorted_ids[1:] == sorted_ids[:-1]]
    if repeated.size:
        raise ValueError(f"source id {repeated[0]} appears more than once in the table joined to")
    index = np.full(len(left_ids), -1, dtype=np.int64)
    if sorted_ids.size:
        position = np.minimum(np.searchsorted(sorted_ids, left_ids), sorted_ids.size - 1)
        hit = (left_ids > 0) & (sorted_ids[position] == left_ids)
        index[hit] = order[position[hit]]
    return index


def match_by_position(
    left_ra: np.ndarray,
    left_dec: np.ndarray,
    right_ra: np.ndarray,
    right_dec: np.ndarray,
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one nearest-neighbour match on the sky within a radius.

    Parameters
    ----------
    left_ra, left_dec : numpy.ndarray, shape (n,)
        ICRS positions [deg] of the rows to match; NaN never matches.
    right_ra, right_dec : numpy.ndarray, shape (m,)
        ICRS positions [deg] of the candidates; NaN never matches.
    radius_arcsec : float, optional, default `DEFAULT_RADIUS_ARCSEC`
        Largest accepted separation [arcsec].

    Returns
    -------
    index : numpy.ndarray of int64, shape (n,)
        Index of the matched right row, -1 where none. When several left rows have the same nearest
        right row, only the closest keeps it.
    separation : numpy.ndarray of float64, shape (n,)
        Separation of the match [arcsec], NaN where none.
    """
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    left_ra, left_dec = np.asarray(left_ra, float), np.asarray(left_dec, float)
    right_ra, right_dec = np.asarray(right_ra, float), np.asarray(right_dec, float)
    index = np.full(len(left_ra), -1, dtype=np.int64)
    separation = np.full(len(left_ra), np.nan)
    left_ok = np.flatnonzero(np.isfinite(left_ra) & np.isfinite(left_dec))
    right_ok = np.flatnonzero(np.isfinite(right_ra) & np.isfinite(right_dec))
    if left_ok.size == 0 or right_ok.size == 0:
        return index, separation
    left = SkyCoord(left_ra[left_ok] * u.deg, left_dec[left_ok] * u.deg)
    right = SkyCoord(right_ra[right_ok] * u.deg, right_dec[right_ok] * u.deg)
    nearest, sep, _ = left.match_to_catalog_sky(right)
    sep = sep.to_value(u.arcsec)
    close = sep <= radius_arcsec
    # One-to-one: visit candidate pairs from the closest; a right row is taken once.
    taken: set[int] = set()
    for k in np.flatnonzero(close)[np.argsort(sep[close], kind="stable")]:
        j = int(right_ok[nearest[k]])
        if j not in taken:
            taken.add(j)
            index[left_ok[k]] = j
            separation[left_ok[k]] = sep[k]
    return index, separation


def _positions_at_epoch(table, epoch: float) -> tuple[np.ndarray, np.ndarray]:
    """``ra``/``dec`` of a Gaia table moved linearly from `GAIA_DR3_EPOCH` to ``epoch`` when it has
    ``pmra`` (mas/yr, includes cos dec) and ``pmdec`` (mas/yr); unchanged (NaN motion = none) otherwise."""
    ra = np.asarray(table["ra"], dtype=float)
    dec = np.asarray(table["dec"], dtype=float)
    if "pmra" not in table.colnames or "pmdec" not in table.colnames:
        return ra, dec
    dt = epoch - GAIA_DR3_EPOCH
    pmra = np.nan_to_num(np.asarray(table["pmra"], dtype=float))
    pmdec = np.nan_to_num(np.asarray(table["pmdec"], dtype=float))
    new_dec = dec + pmdec * dt / _MAS_PER_DEG
    new_ra = ra + pmra * dt / _MAS_PER_DEG / np.cos(np.deg2rad(dec))
    return np.mod(new_ra, 360.0), new_dec


def missing_value(dtype: np.dtype):
    """The "not observed / not matched" value of a column type: NaN, `MISSING_ID` (signed integers),
    0 (unsigned), False or ""."""
    kind = np.dtype(dtype).kind
    if kind == "f":
        return np.nan
    if kind in "iu":
        return MISSING_ID if kind == "i" else 0
    if kind == "b":
        return False
    return ""


def join_rows(
    left,
    right,
    *,
    key: str = "gaia_dr3_source_id",
    radius_arcsec: float = DEFAULT_RADIUS_ARCSEC,
):
    """Left-join two tables of dataset rows: by ``key``, then by position for rows without an id.

    Parameters
    ----------
    left : astropy.table.Table
        Rows to keep, one output row each (e.g. Gaia XP rows), with ``key`` and, for the positional
        match, ``ra``/``dec`` [deg, epoch J2016.0] (optionally ``pmra``/``pmdec`` [mas/yr]).
    right : astropy.table.Table
        Rows to attach (e.g. APOGEE rows), with ``key`` (unique among valid ids; <= 0 = none) and, for
        the positional match, ``ra``/``dec`` [deg, 2MASS epoch].
    key : str, optional, default "gaia_dr3_source_id"
        Identifier column present in both.
    radius_arcsec : float, optional, default `DEFAULT_RADIUS_ARCSEC`
        Radius of the positional match [arcsec].

    Returns
    -------
    astropy.table.Table
        ``left``'s rows in order, with ``right``'s other columns appended (NaN / -1 / "" where
        unmatched). A column present in both keeps ``left``'s value and takes ``right``'s only where
        ``left``'s is NaN, together with its ``_err`` column so a value never pairs with another
        survey's error; ``source`` becomes ``"<left>+<right>"`` on matched rows. Added columns:
        ``crossmatch`` ("source_id", "position" or "") and ``crossmatch_separation_arcsec``
        (float64, NaN unless matched by position).

    Raises
    ------
    ValueError
        If ``key`` is missing from either table or a valid id repeats in ``right``.
    """
    from astropy.table import Table

    for name, table in (("left", left), ("right", right)):
        if key not in table.colnames:
            raise ValueError(f"{name} table has no {key!r} column")
    index = match_by_source_id(left[key], right[key])
    how = np.where(index >= 0, "source_id", "").astype("<U9")
    separation = np.full(len(left), np.nan)

    has_positions = all(c in t.colnames for t in (left, right) for c in ("ra", "dec"))
    right_without_id = np.flatnonzero(np.asarray(right[key]) <= 0)
    left_open = np.flatnonzero(index < 0)
    if has_positions and right_without_id.size and left_open.size:
        ra, dec = _positions_at_epoch(left[left_open], TWOMASS_EPOCH)
        sub_index, sub_sep = match_by_position(
            ra, dec, right["ra"][right_without_id], right["dec"][right_without_id], radius_arcsec
        )
        hit = sub_index >= 0
        index[left_open[hit]] = right_without_id[sub_index[hit]]
        how[left_open[hit]] = "position"
        separation[left_open[hit]] = sub_sep[hit]

    matched = index >= 0
    out = Table(left, copy=True)
    shared = [c for c in right.colnames if c in left.colnames and c != key]
    for name in right.colnames:
        if name == key or name in shared:
            continue
        column = right[name]
        values = np.full((len(left), *column.shape[1:]), missing_value(column.dtype), dtype=column.dtype)
        values[matched] = np.asarray(column)[index[matched]]
        out[name] = values
    for name in shared:
        if name.endswith("_err") and name[: -len("_err")] in shared:
            continue  # filled together with its value below
        left_values, right_values = np.asarray(out[name]), np.asarray(right[name])
        if name == "source":
            text = left_values.astype(str)
            joined = np.char.add(np.char.add(text[matched], "+"), right_values[index[matched]].astype(str))
            text = text.astype(np.result_type(text.dtype, joined.dtype))
            text[matched] = joined
            out[name] = text
        elif left_values.dtype.kind == "f":
            take = np.zeros(len(left), dtype=bool)
            take[matched] = np.isnan(left_values[matched]) & ~np.isnan(right_values[index[matched]])
            for column_name in (name, f"{name}_err"):
                if column_name in shared:
                    filled = np.array(out[column_name])
                    filled[take] = np.asarray(right[column_name])[index[take]]
                    out[column_name] = filled
    out["crossmatch"] = how
    out["crossmatch_separation_arcsec"] = separation
    return out
