"""People, hospitals, staff roles, bank partners, credit lines and family links."""
