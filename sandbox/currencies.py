"""ISO 4217 active currency codes (List One published 2026-01-01, 178 codes), lowercase."""

from __future__ import annotations

# The full active list, funds and precious metals included (they are active codes too); codes withdrawn
# before 2026 (hrk, sll, zwl, cuc, ang, ...) are rejected, see docs/sandbox.md.
CURRENCY_CODES: frozenset[str] = frozenset(
    """
    aed afn all amd aoa ars aud awg azn bam bbd bdt bhd bif bmd bnd bob bov brl bsd btn bwp byn
    bzd cad cdf che chf chw clf clp cny cop cou crc cup cve czk djf dkk dop dzd egp ern etb eur
    fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr iqd irr isk jmd jod jpy
    kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl mga mkd mmk mnt mop mru
    mur mvr mwk mxn mxv myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron
    rsd rub rwf sar sbd scr sdg sek sgd shp sle sos srd ssp stn svc syp szl thb tjs tmt tnd top
    try ttd twd tzs uah ugx usd usn uyi uyu uyw uzs ved ves vnd vuv wst xad xaf xag xau xba xbb
    xbc xbd xcd xcg xdr xof xpd xpf xpt xsu xts xua xxx yer zar zmw zwg
    """.split()
)
