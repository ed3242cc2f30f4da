"""What every product reader shares: grids and multilook, raster reading, mosaics of
frames, the user's selection of pairs, dates and area."""
