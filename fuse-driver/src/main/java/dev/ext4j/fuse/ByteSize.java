package dev.ext4j.fuse;

/** Sizes as people write them on command lines: a number with an optional K, M, G or T suffix. */
public final class ByteSize {
    private ByteSize() {
    }

    /**
     * A count with an optional K, M, G or T suffix (powers of 1024).
     *
     * @throws IllegalArgumentException (NumberFormatException for a malformed number) when it is
     *                                  not a count, negative, or past 2^63 - 1
     */
    public static long parse(String v) {
        int shift = switch (v.isEmpty() ? ' ' : Character.toUpperCase(v.charAt(v.length() - 1))) {
            case 'K' -> 10;
            case 'M' -> 20;
            case 'G' -> 30;
            case 'T' -> 40;
            default -> 0;
        };
        long n = Long.parseLong(shift == 0 ? v : v.substring(0, v.length() - 1));
        if (n < 0 || n > Long.MAX_VALUE >> shift) {
            throw new IllegalArgumentException(v + " is out of range");
        }
        return n << shift;
    }
}
