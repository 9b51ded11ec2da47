"""The IKE engine (IKEv1 and IKEv2), one sans-I/O core playing both the CGW and the AWS tunnel-endpoint role."""

from __future__ import annotations
