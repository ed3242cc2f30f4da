"""The result folder: its layout (one owner of the names), the writers of stores, COGs,
figures and the report, and the versions that NRT updates and full re-runs add."""
