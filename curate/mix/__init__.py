"""The mix: member selection, interleaving and shard writing (issue 16); :mod:`curate.mix.writer` writes the shards."""
