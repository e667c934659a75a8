"""Geography: coordinate reference systems, point-in-polygon enrichment, geocoding."""
