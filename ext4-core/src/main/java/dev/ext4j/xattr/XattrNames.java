package dev.ext4j.xattr;

/**
 * The name indexes of fs/ext4/xattr.c: each stands for a prefix, so "user.mime" is stored as index 1
 * and suffix "mime". The two ACL names are whole names with an empty suffix.
 */
public final class XattrNames {
    public static final int USER = 1;
    public static final int POSIX_ACL_ACCESS = 2;
    public static final int POSIX_ACL_DEFAULT = 3;
    public static final int TRUSTED = 4;
    public static final int SECURITY = 6;
    public static final int SYSTEM = 7;
    public static final int RICHACL = 8;

    public static final String ACL_ACCESS = "system.posix_acl_access";
    public static final String ACL_DEFAULT = "system.posix_acl_default";

    private XattrNames() {
    }

    /** The prefix of {@code index}; unknown indexes get a prefix nobody can ask for. */
    public static String prefix(int index) {
        return switch (index) {
            case USER -> "user.";
            case POSIX_ACL_ACCESS -> ACL_ACCESS;
            case POSIX_ACL_DEFAULT -> ACL_DEFAULT;
            case TRUSTED -> "trusted.";
            case SECURITY -> "security.";
            case SYSTEM -> "system.";
            case RICHACL -> "system.richacl";
            default -> "unknown" + index + ".";
        };
    }

    /** True for indexes the VFS can name (listxattr shows only those). */
    public static boolean isKnown(int index) {
        return index >= USER && index <= RICHACL && index != 5;
    }

    /** Splits a VFS name into index and suffix; null when no prefix matches. */
    public static Xattr split(String name) {
        if (name.equals(ACL_ACCESS)) {
            return new Xattr(POSIX_ACL_ACCESS, new byte[0], null);
        }
        if (name.equals(ACL_DEFAULT)) {
            return new Xattr(POSIX_ACL_DEFAULT, new byte[0], null);
        }
        int[] indexes = {USER, TRUSTED, SECURITY, SYSTEM};
        for (int idx : indexes) {
            String p = prefix(idx);
            if (name.startsWith(p) && name.length() > p.length()) {
                return new Xattr(idx, name.substring(p.length()).getBytes(java.nio.charset.StandardCharsets.ISO_8859_1), null);
            }
        }
        return null;
    }
}
