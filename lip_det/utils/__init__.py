"""What the tests of lip_det's layers measure with (saved-tensor memory)."""
