package dev.ext4j.blockmap;

/**
 * Where a run of logical blocks lives: {@code length} blocks from {@code logical} map to
 * {@code physical} onward, or are a hole ({@code physical == 0}) or unwritten; both read as zeros.
 */
public record Mapping(long logical, long physical, long length, boolean unwritten) {

    public boolean isHole() {
        return physical == 0;
    }

    /** True when the blocks read as zeros. */
    public boolean readsAsZeros() {
        return physical == 0 || unwritten;
    }
}
