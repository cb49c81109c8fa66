package dev.ext4j.fuse;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.ValueSource;

class ByteSizeTest {
    @ParameterizedTest
    @CsvSource({"0, 0", "4096, 4096", "1k, 1024", "1K, 1024", "3M, 3145728", "2g, 2147483648", "1T, 1099511627776",
            "8388607T, 9223370937343148032", "9223372036854775807, 9223372036854775807"})
    void parses(String text, long bytes) {
        assertEquals(bytes, ByteSize.parse(text));
    }

    /** Not a count, negative, or past 2^63 - 1 (8 EiB is 2^63: one too many). */
    @ParameterizedTest
    @ValueSource(strings = {"", "K", "12Q", "1.5G", " 1G", "-1", "-1K", "8388608T", "9223372036854775808"})
    void refuses(String text) {
        assertThrows(IllegalArgumentException.class, () -> ByteSize.parse(text));
    }
}
