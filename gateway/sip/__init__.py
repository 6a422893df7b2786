"""The pjsua2 adapter: every pjsua2 object lives here."""
